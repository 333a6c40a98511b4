"""python -m bench.compare [--data DIR] [--n N] [--repeats R] [--rounds K] [--json OUT]

One run, this machine (its CPU model and ISA features printed first), the same images, one thread: PyTorch eager fp32, ONNX Runtime fp32, ONNX Runtime on
the int8 QCDQ ONNX, our float bundle and our int8 bundle, both built for the fastest x86-64 target this CPU
runs (`x86_64-vnni` with AVX-512 VNNI, else `x86_64`; or --target). Median ms per image, and each one's
speed relative to ONNX Runtime fp32.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.demo import median_latency_ms
from bench.deploy import run_bundle_here
from compile.bundle import ensure_bundle
from compile.toolchains import TARGETS
from targets.cpu import host_cpu, host_target
from ucm.checkpoint import load_float_model
from ucm.data import load_images
from ucm.evaluate import onnx_predictor
from ucm.files import atomic_write_json
from ucm.paths import DIST, FLOAT_CHECKPOINT, FLOAT_ONNX, INT8_ONNX, SAMPLE_DATA


def time_callable(fn, inputs: list, repeats: int) -> float:
    """Median ms per input (bench.demo's median of `repeats` runs), then the median over inputs."""
    return statistics.median(median_latency_ms(fn, x, repeats) for x in inputs)


def time_bundle(bundle: Path, names: list[str], images: np.ndarray, repeats: int) -> float:
    """Median ms per image of the bundle's runner (its own monotonic-clock timings, median of --repeat runs)."""
    with tempfile.TemporaryDirectory(prefix="ucm-compare-") as tmp:
        micros = run_bundle_here(bundle, names, images, Path(tmp), repeat=repeats).micros
    return statistics.median(micros) / 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n\n")[1].split("\n")[0])
    parser.add_argument("--data", type=Path, default=SAMPLE_DATA)
    parser.add_argument("--n", type=int, default=8, help="images")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per image")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measure all five this many times, alternating; report each one's best round")
    parser.add_argument("--target", choices=[t.name for t in TARGETS.values() if t.triple.startswith("x86_64")],
                        default=None,
                        help="the bundles' target (default: the fastest this CPU runs)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    cpu = host_cpu()
    target = args.target or host_target(cpu)
    torch.set_num_threads(1)
    names, images = load_images(args.data, 256, args.n)
    floats = [torch.from_numpy(im).permute(2, 0, 1)[None].float().div(255) for im in images]
    model, _ = load_float_model(FLOAT_CHECKPOINT)
    model.eval()
    float_bundle = ensure_bundle(target, FLOAT_ONNX, DIST / f"{target}-float")
    int8_bundle = ensure_bundle(target, INT8_ONNX, DIST / target)
    runs = {
        "PyTorch eager fp32": lambda: time_callable(model, floats, args.repeats),
        "ONNX Runtime fp32": lambda: time_callable(onnx_predictor(FLOAT_ONNX, threads=1), floats, args.repeats),
        "ONNX Runtime int8 (QCDQ)": lambda: time_callable(onnx_predictor(INT8_ONNX, threads=1), floats, args.repeats),
        f"ucm-edge float bundle ({target})": lambda: time_bundle(DIST / f"{target}-float", names, images, args.repeats),
        f"ucm-edge int8 bundle ({target})": lambda: time_bundle(DIST / target, names, images, args.repeats),
    }
    rounds: dict[str, list[float]] = {name: [] for name in runs}
    with torch.no_grad():
        for _ in range(args.rounds):  # alternating, so a slow spell of a shared machine hits all of them
            for name, run in runs.items():
                rounds[name].append(run())
    results = {name: min(values) for name, values in rounds.items()}
    base = results["ONNX Runtime fp32"]
    print(f"CPU: {cpu.describe()}")
    print(f"{len(names)} images, 256x256, 1 thread, median of {args.repeats} runs per image, best of "
          f"{args.rounds} alternating rounds (compare ratios within one run: absolute figures vary between machines)")
    print(f"{'runtime':36s} {'ms/image':>9s} {'vs ORT fp32':>12s}")
    for name, ms in results.items():
        print(f"{name:36s} {ms:9.2f} {base / ms:11.2f}x")
    print(f"int8 bundle RAM {int8_bundle['ram_bytes']['total']:,} B, flash {int8_bundle['flash_bytes']['code']:,} B code "
          f"+ {int8_bundle['flash_bytes']['weights']:,} B weights; float bundle RAM {float_bundle['ram_bytes']['total']:,} B")
    if args.json:
        atomic_write_json(args.json, {"cpu": cpu.to_dict(), "target": target, "ms_per_image": results, "rounds_ms": rounds,
                                      "n_images": len(names), "repeats": args.repeats,
                                      "int8_bundle": {k: int8_bundle[k] for k in ("ram_bytes", "flash_bytes")},
                                      "float_bundle": {k: float_bundle[k] for k in ("ram_bytes", "flash_bytes")}})
    return 0


if __name__ == "__main__":
    sys.exit(main())

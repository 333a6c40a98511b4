"""python bench/run.py --board NAME [--data DIR] [--n N] [--model-dir DIR] [--out DIR] [--emulate]
[--host USER@HOST] [--trust-new-host] [--json OUT]

Does the int8 model on this board segment as well as the float model, and how fast is it? Builds (or
reuses) the bundle for the board's target, runs it on the board (over SSH, or emulated with QEMU when the
board has no host or with --emulate), and compares it with the float model and the int8 ONNX on the host.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import RunConfig, run
from bench.report import table
from targets.board import BOARDS_DIR
from ucm.errors import run_command
from ucm.files import atomic_write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n\n")[1].split("\n")[0])
    parser.add_argument("--board", required=True, help="a board name (python -m targets list) or a board TOML file")
    parser.add_argument("--data", type=Path, default=RunConfig.data, help="images + masks (default: the shipped sample)")
    parser.add_argument("--n", type=int, default=None, help="use the first N images")
    parser.add_argument("--model-dir", type=Path, default=RunConfig.model_dir, help="holds ucm_float.pt and ucm_int8.onnx")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default runs/<board>)")
    parser.add_argument("--emulate", action="store_true", help="run under QEMU even if the board has a host")
    parser.add_argument("--host", default=None, help="USER@HOST[:PORT] of the board (overrides its TOML)")
    parser.add_argument("--trust-new-host", action="store_true", help="accept and record an unknown SSH host key")
    parser.add_argument("--boards-dir", type=Path, default=BOARDS_DIR)
    parser.add_argument("--bundle-dir", type=Path, default=None, help="bundle folder (default dist/<target>)")
    parser.add_argument("--json", type=Path, default=None, help="also write report.json here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    cfg = RunConfig(board=args.board, data=args.data, n=args.n, model_dir=args.model_dir, out=args.out,
                    emulate=args.emulate, host=args.host, trust_new_host=args.trust_new_host,
                    boards_dir=args.boards_dir, bundle_dir=args.bundle_dir, progress=not args.no_progress)
    return run_command(lambda: _run(cfg, args.json))


def _run(cfg: RunConfig, json_out: Path | None) -> int:
    try:
        report = run(cfg)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished images are kept in {cfg.out_dir()}; run the same command to resume",
              file=sys.stderr)
        return 130
    print(table(report))
    print(f"report: {cfg.out_dir() / 'report.md'}")
    if json_out:
        atomic_write_json(json_out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

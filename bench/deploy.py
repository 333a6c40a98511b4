"""Flash a bundle to a board and run its runner there on images, chunk by chunk, resumably.

"Flash" for a Linux board: upload the statically linked runner to the board's work dir, verify it
(size + SHA-256 on both ends) and make it executable; for a microcontroller under QEMU the firmware ELF is
put in the work folder, which QEMU boots and the firmware reads its images from through semihosting.
Images go up as binary PPMs in chunks; after each chunk the masks, logits and timings come back and
`progress.json` records the finished images, so an interrupted run (or a dropped connection) resumes from the
last finished image; a finished run, run again, measures again. What is resumed is keyed by content: the runner's SHA-256, the caller's context (the ONNX and
float checkpoint hashes) and each image's pixels; an image whose pixels changed under the same name is run
afresh, and a changed runner or context starts the whole run afresh.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from compile.executor.runner_io import load_metadata, read_logits, read_pgm, read_timings, write_ppm
from compile.toolchains import get_target
from targets.connect import local_transport
from targets.transport import CommandFailedError, Transport
from ucm.files import atomic_write_json, sha256_file


@dataclass
class DeviceResults:
    names: list[str]
    masks: np.ndarray  # [N, H, W] uint8 0/255
    logits: np.ndarray  # [N, H, W] float32
    micros: list[int]  # per image, in the order of names
    resumed: int = 0  # images taken from an earlier interrupted run
    discarded: list[str] = field(default_factory=list)  # why results of an earlier run were not reused


def image_sha256(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def _resume_state(state_path: Path, runner_sha: str, context: dict[str, str], names: list[str],
                  digests: list[str]) -> tuple[dict, list[str]]:
    """The progress to continue from, and what of an earlier run was not reused (and why)."""
    fresh = {"runner_sha256": runner_sha, "context": context, "images": {}}
    if not state_path.is_file():
        return fresh, []
    state = json.loads(state_path.read_text())
    if state.get("complete"):
        return fresh, []  # a finished run, run again, measures again
    if "images" not in state:
        return fresh, [f"{state_path} is from an older ucm-edge: every image runs afresh"]
    if state.get("runner_sha256") != runner_sha:
        return fresh, ["the runner changed since the interrupted run: every image runs afresh"]
    if state.get("context") != context:
        changed = sorted(k for k in {*context, *state.get("context", {})} if state["context"].get(k) != context.get(k))
        return fresh, [f"{', '.join(changed)} changed since the interrupted run: every image runs afresh"]
    done = state["images"]
    changed = [n for n, d in zip(names, digests) if n in done and done[n]["sha256"] != d]
    for name in changed:
        del done[name]
    if changed:
        return state, [f"{len(changed)} images have other pixels than in the interrupted run under the same name "
                       f"(e.g. {changed[0]}): they run afresh"]
    return state, []


def flash(transport: Transport, runner: Path, timeout_s: float) -> PurePosixPath:
    transport.check(["mkdir", "-p", str(transport.work_dir / "in"), str(transport.work_dir / "out")], timeout_s)
    remote = transport.work_dir / runner.name
    transport.upload([(runner, remote)], executable=True, timeout_s=timeout_s)
    return remote


def run_on_board(transport: Transport, runner: Path, names: list[str], images: np.ndarray, out: Path,
                 chunk: int = 8, timeout_s: float = 600, progress: bool = True,
                 context: dict[str, str] | None = None, repeat: int = 1) -> DeviceResults:
    """Masks, logits and per-image microseconds (the median of `repeat` runs) of the board's runner for uint8
    images [N, H, W, 3]. `context`: hashes of what else the run's results depend on (resumed only where they
    are equal)."""
    local = out / "device"
    local_in = out / "inputs"
    local.mkdir(parents=True, exist_ok=True)
    local_in.mkdir(parents=True, exist_ok=True)
    state_path = out / "progress.json"
    digests = [image_sha256(image) for image in images]
    state, discarded = _resume_state(state_path, sha256_file(runner), context or {}, names, digests)
    done: dict[str, dict] = state["images"]
    resumed = sum(1 for n in names if n in done)
    todo = [i for i, n in enumerate(names) if n not in done]
    h, w = images.shape[1:3]
    if todo:
        remote_runner = flash(transport, runner, timeout_s)
        remote_in, remote_out = transport.work_dir / "in", transport.work_dir / "out"
        bar = tqdm(total=len(names), initial=len(names) - len(todo), desc=f"{transport.board_name}", unit="img",
                   disable=not progress)
        for start in range(0, len(todo), chunk):
            batch = todo[start:start + chunk]
            files = []
            for i in batch:
                path = local_in / f"{names[i]}.ppm"
                write_ppm(path, images[i])
                files.append((path, remote_in / path.name))
            transport.upload(files, timeout_s=timeout_s)
            remote_paths = [remote for _, remote in files]
            argv = transport.program_argv(remote_runner, ["--logits", "--repeat", str(repeat), "--out", str(remote_out),
                                                          *map(str, remote_paths)])
            result = transport.run(argv, timeout_s)
            if result.exit_status != 0:
                raise CommandFailedError(
                    f"board {transport.board_name}: the runner failed on {names[batch[0]]}..{names[batch[-1]]} "
                    f"(exit {result.exit_status}): {result.stderr.strip()[-1500:]}; {len(done)} finished images "
                    f"are kept in {state_path}"
                )
            transport.get(remote_out / "timings.tsv", local / "timings_chunk.tsv")
            micros = read_timings(local / "timings_chunk.tsv")
            for i in batch:
                for ext in ("pgm", "f32"):
                    transport.get(remote_out / f"{names[i]}.{ext}", local / f"{names[i]}.{ext}")
                done[names[i]] = {"sha256": digests[i], "micros": micros[names[i]]}
            atomic_write_json(state_path, state)
            bar.update(len(batch))
        bar.close()
    state["complete"] = True
    atomic_write_json(state_path, state)
    masks = np.stack([read_pgm(local / f"{n}.pgm") for n in names])
    logits = np.stack([read_logits(local / f"{n}.f32", h, w) for n in names])
    return DeviceResults(names, masks, logits, [done[n]["micros"] for n in names], resumed, discarded)


def run_bundle_here(bundle: Path, names: list[str], images: np.ndarray, out: Path, repeat: int = 1) -> DeviceResults:
    """A bundle's runner on this machine (under QEMU for a foreign target), through the same transport path as
    a board: for parity checks and host benchmarks."""
    target = get_target(load_metadata(bundle)["target"])
    transport = local_transport(target, out / "work")
    return run_on_board(transport, bundle / target.runner, names, images, out, progress=False, repeat=repeat)

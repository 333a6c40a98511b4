"""Flash a bundle to a board and run its runner there on images, chunk by chunk, resumably.

"Flash" for a Linux board: upload the statically linked runner to the board's work dir, verify it
(size + SHA-256 on both ends) and make it executable. Images go up as binary PPMs in chunks; after each
chunk the masks, logits and timings come back and `progress.json` records the finished images, so an
interrupted run (or a dropped connection) resumes from the last finished image; a finished run, run again,
measures again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from compile.runner_io import read_logits, read_pgm, read_timings, write_ppm
from targets.transport import CommandFailedError, Transport, sha256_file


@dataclass
class DeviceResults:
    names: list[str]
    masks: np.ndarray  # [N, H, W] uint8 0/255
    logits: np.ndarray  # [N, H, W] float32
    micros: list[int]  # per image, in the order of names
    resumed: int = 0  # images taken from an earlier interrupted run


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def flash(transport: Transport, runner: Path, timeout_s: float) -> PurePosixPath:
    transport.check(["mkdir", "-p", str(transport.work_dir / "in"), str(transport.work_dir / "out")], timeout_s)
    remote = transport.work_dir / "ucm_runner"
    transport.upload([(runner, remote)], executable=True, timeout_s=timeout_s)
    return remote


def run_on_board(transport: Transport, runner: Path, names: list[str], images: np.ndarray, out: Path,
                 chunk: int = 8, timeout_s: float = 600, progress: bool = True) -> DeviceResults:
    """Masks, logits and per-image microseconds of the board's runner for uint8 images [N, H, W, 3]."""
    local = out / "device"
    local_in = out / "inputs"
    local.mkdir(parents=True, exist_ok=True)
    local_in.mkdir(parents=True, exist_ok=True)
    state_path = out / "progress.json"
    runner_sha = sha256_file(runner)
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    if state.get("runner_sha256") != runner_sha or state.get("complete"):
        # a different build, or a finished run (run again = measure again): start afresh
        state = {"runner_sha256": runner_sha, "micros": {}}
    done: dict[str, int] = state["micros"]
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
            argv = [*transport.exec_prefix(), str(remote_runner), "--logits", "--out", str(remote_out),
                    *map(str, remote_paths)]
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
                done[names[i]] = micros[names[i]]
            _write_json_atomic(state_path, state)
            bar.update(len(batch))
        bar.close()
    state["complete"] = True
    _write_json_atomic(state_path, state)
    masks = np.stack([read_pgm(local / f"{n}.pgm") for n in names])
    logits = np.stack([read_logits(local / f"{n}.f32", h, w) for n in names])
    return DeviceResults(names, masks, logits, [done[n] for n in names], resumed)

"""Schedule rules for kernels with a 2x bilinear upsample (`compile.kernels.resize`): its input is stored once,
and its output is computed row by row, two pixels per step.

An output pixel `x` reads input columns `(x - 1) // 2` and the next one, clamped to the row: inlined into a
loop over `x`, these indices are no ramp, so a vectorized loop loads each tap of each lane alone and runs the
arithmetic one element at a time. Split by the parity of `x` (`x = 2 i + p`), the taps are `i - 1 + p` and
`i + p`: consecutive along `i` wherever the clamps do nothing, which is every step but the first and the last
of a row (TVM's loop_partition separates them; its simplifier then drops the clamps). The parity loop is
innermost and unrolled, so each step computes an even and an odd pixel: LLVM vectorizes the loop over `i`,
interleaves the two parities in registers and stores whole vectors (with the parity outside, TVM's vectors
stored every second byte one at a time). Each element is computed as before, so the output is bit-identical.
(loop_partition's copies of a block share its iteration variables: TVM lowers the result, but a new Schedule
refuses it: nothing builds one from a scheduled kernel.)

In the decoder's kernels the upsample's int8 result is then transposed into the mixer's token layout: that
value is computed one image row at a time into a row buffer (in the upsample's order, as above) and copied to
the tokens from there.
"""

from __future__ import annotations

from tvm.s_tir import Schedule, ScheduleError

from compile.kernels.attrs import LANES

_INT8 = ("int8", "uint8")


def _resize_blocks(sch: Schedule) -> list:
    return [b for b in sch.get_child_blocks(sch.get_sblock("root")) if sch.get(b).name_hint.startswith("resize")]


def _dtype(sch: Schedule, block) -> str:
    return str(sch.get(block).writes[0].source.dtype)


def has_resize(sch: Schedule) -> bool:
    return bool(_resize_blocks(sch))


def _nearest_int8(sch: Schedule, step) -> list[str]:
    """For each resize: the first 8-bit block reached through float blocks along `step` (get_producers or
    get_consumers), one block at a time."""
    found = []
    for block in _resize_blocks(sch):
        blocks = step(block)
        while len(blocks) == 1 and _dtype(sch, blocks[0]) == "float32":
            blocks = step(blocks[0])
        if len(blocks) == 1 and _dtype(sch, blocks[0]) in _INT8:
            found.append(sch.get(blocks[0]).name_hint)
    return found


def resize_inputs(sch: Schedule) -> tuple[str, ...]:
    """The blocks that write an 8-bit value a resize reads (through its dequantize). Inlined, the value and
    everything computed before it in the kernel (a whole GroupNorm) would be computed again for every tap of
    every output: 16 times per input element."""
    return tuple(_nearest_int8(sch, sch.get_producers))


def resize_results(sch: Schedule) -> tuple[str, ...]:
    """The blocks that quantize a resize's result (after its float element-wise readers: ReLU, the skip
    addition)."""
    return tuple(_nearest_int8(sch, sch.get_consumers))


def output_blocks(sch: Schedule) -> set[str]:
    """The names of the blocks that write the kernel's outputs."""
    return {sch.get(b).name_hint for b in sch.get_output_blocks(sch.get_sblock("root"))}


def _lanes(extent: int) -> int | None:
    """Steps of a row of `extent` upsampled pixels (two per step) in its first and its last loop: the widest
    vector that leaves the middle loop at least one (None if none does: such a row is too short to gain)."""
    half = extent // 2
    return next((v for v in (LANES, 8, 4) if extent % 2 == 0 and half % v == 0 and half // v >= 3), None)


def split_by_parity(sch: Schedule, block) -> None:
    """Split the block's innermost (upsampled) loop by parity, the parity innermost and unrolled; the first and
    last `_lanes` steps of a row in their own loops, so the others read consecutive columns. Where TVM refuses
    a step, the row stays as far as it got (each step keeps the values)."""
    x = sch.get_loops(block)[-1]
    lanes = _lanes(int(sch.get(x).extent))
    if lanes is None:
        return
    try:
        i, _ = sch.split(x, [None, 2])
        steps, _ = sch.split(i, [None, lanes])
        count = int(sch.get(steps).extent)
        for part in sch.loop_partition(steps, [1, count - 2, None]):
            for inner in sch.get_child_blocks(part):
                sch.unroll(sch.get_loops(inner)[-1])
    except ScheduleError:
        return


def compute_rows(sch: Schedule, results: tuple[str, ...]) -> bool:
    """Each resize result (`resize_results`, kept by the inlining) that the kernel's output block transposes
    is computed one row at a time under that block's loop over a row of tokens; each is split by parity.
    False if one cannot be placed (it would be a whole tensor in scratch memory)."""
    outputs = output_blocks(sch)
    for name in results:
        block = sch.get_sblock(name)
        if name not in outputs:
            shape = [int(d) for d in sch.get(block).writes[0].source.shape]
            consumers = sch.get_consumers(block)
            if len(consumers) != 1 or len(shape) != 4 or _lanes(shape[3]) is None:
                return False
            tokens = [lp for lp in sch.get_loops(consumers[0]) if int(sch.get(lp).extent) == shape[2] * shape[3]]
            if len(tokens) != 1:
                return False
            try:
                row, _ = sch.split(tokens[0], [None, shape[3]])
                sch.compute_at(block, row)
            except ScheduleError:
                return False
        split_by_parity(sch, block)
    return True

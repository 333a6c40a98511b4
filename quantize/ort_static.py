"""Post-training int8 quantization with ONNX Runtime's own tool, the way most int8 ONNX files are made:

    python -m quantize.ort_static --out ucm_ort_u8.onnx                                   # uint8 asymmetric
    python -m quantize.ort_static --out ucm_ort_s8.onnx --activations int8 --per-tensor    # int8 symmetric

`onnxruntime.quantization.quantize_static` in QDQ format on a float ONNX (default: the shipped
checkpoints/ucm_float.onnx), calibrated (MinMax) on the first `--n` images of the shipped sample;
int8 symmetric weights, per output channel unless `--per-tensor`; activations uint8 with zero points (ONNX
Runtime's default) or int8 symmetric. The result compiles with `python -m compile --onnx OUT`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from quantize.calibration import add_calibration_arguments, calibration_batches
from ucm.errors import UserError, run_command
from ucm.files import atomic_write_bytes
from ucm.paths import FLOAT_ONNX, SAMPLE_DATA


class _SampleReader(CalibrationDataReader):
    """The sample images as the float model's input: [1, 3, S, S] float32 in [0, 1]."""

    def __init__(self, input_name: str, size: int, n: int, data: Path) -> None:
        self._batches = iter([{input_name: batch} for batch in calibration_batches(data, size, n)])

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def quantize_with_ort(float_onnx: Path, out: Path, activations: str = "uint8", per_channel: bool = True,
                      n: int = 8, data: Path = SAMPLE_DATA) -> Path:
    """Write the QDQ int8 model of `float_onnx` to `out` (atomically)."""
    try:
        model = onnx.load(str(float_onnx))
    except Exception as e:  # protobuf's DecodeError or OSError: the file is not a model
        raise UserError(f"{float_onnx}: cannot read the float ONNX ({e})") from e
    graph_input = model.graph.input[0]
    size = graph_input.type.tensor_type.shape.dim[-1].dim_value
    if size <= 0:
        raise UserError(f"{float_onnx}: input '{graph_input.name}' has no static size; export with a fixed input")
    symmetric = activations == "int8"
    with tempfile.TemporaryDirectory(prefix="ucm-ort-") as tmp:
        staged = Path(tmp) / "model.onnx"
        quantize_static(str(float_onnx), str(staged), _SampleReader(graph_input.name, size, n, data),
                        quant_format=QuantFormat.QDQ, per_channel=per_channel, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True})
        atomic_write_bytes(out, staged.read_bytes())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quantize.ort_static", description=__doc__.split("\n")[0])
    parser.add_argument("--float-onnx", type=Path, default=FLOAT_ONNX, help="float model (default: shipped)")
    add_calibration_arguments(parser)
    parser.add_argument("--activations", choices=("uint8", "int8"), default="uint8",
                        help="uint8 with zero points (ONNX Runtime's default) or int8 symmetric")
    parser.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor, not per channel")
    args = parser.parse_args(argv)

    def run() -> int:
        path = quantize_with_ort(args.float_onnx, args.out, args.activations, not args.per_tensor, args.n, args.data)
        print(f"wrote {path}")
        return 0

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())

"""Post-training int8 quantization with PyTorch's PT2E flow, exported to QDQ ONNX:

    pip install -e ".[pt2e]"          # torchao: PyTorch 2.13 no longer ships torch.ao.quantization.quantize_pt2e
    python -m quantize.pt2e --out ucm_pt2e.onnx

The float checkpoint (default: checkpoints/ucm_float.pt) is captured with `torch.export`, prepared with
torchao's `X86InductorQuantizer` (uint8 activations with zero points, int8 symmetric per-channel weights),
calibrated on the first `--n` sample images, converted, and written by PyTorch's ONNX exporter
(`torch.onnx.export(..., dynamo=True)`), which turns the quantize / dequantize ops into QuantizeLinear /
DequantizeLinear. The result compiles with `python -m compile --onnx OUT`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from quantize.calibration import add_calibration_arguments, calibration_batches
from ucm.checkpoint import load_float_model
from ucm.errors import UserError, run_command
from ucm.files import atomic_write_bytes
from ucm.paths import FLOAT_CHECKPOINT, SAMPLE_DATA


def quantize_with_pt2e(checkpoint: Path, out: Path, size: int = 256, n: int = 8, data: Path = SAMPLE_DATA) -> Path:
    """Write the PT2E-quantized QDQ ONNX of the float checkpoint to `out` (atomically)."""
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )
    except ImportError as e:
        raise UserError(f"PT2E needs torchao ({e}); install it with: pip install -e \".[pt2e]\"") from e
    model, _ = load_float_model(checkpoint)
    model.eval()
    batches = [torch.from_numpy(batch) for batch in calibration_batches(data, size, n)]
    captured = torch.export.export(model, (batches[0],)).module()
    prepared = prepare_pt2e(captured, X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config()))
    with torch.no_grad():
        for batch in batches:
            prepared(batch)
    program = torch.onnx.export(convert_pt2e(prepared), (batches[0],), dynamo=True, opset_version=18,
                                input_names=["image"], output_names=["logits"])
    with tempfile.TemporaryDirectory(prefix="ucm-pt2e-") as tmp:
        staged = Path(tmp) / "model.onnx"
        program.save(str(staged))
        atomic_write_bytes(out, staged.read_bytes())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quantize.pt2e", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=FLOAT_CHECKPOINT, help="float checkpoint (default: shipped)")
    add_calibration_arguments(parser)
    parser.add_argument("--size", type=int, default=256, help="input size (default 256)")
    args = parser.parse_args(argv)

    def run() -> int:
        print(f"wrote {quantize_with_pt2e(args.checkpoint, args.out, args.size, args.n, args.data)}")
        return 0

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())

"""Int8 UCM-Net for quantization-aware training with Brevitas.

The quantized network is the float `ucm.model.UCMNet` itself with every `nn.Conv2d` and `nn.Linear` swapped
for its Brevitas counterpart (`quantize_model`): there is no second copy of the architecture.

Which tensors are int8, and why:
- Every convolution and linear layer (33 conv, 20 linear, plus the 5 training-only stage heads) has
  - weights: int8, symmetric, narrow range [-127, 127], one scale per output channel
    (`Int8WeightPerChannelFloat`: per-channel scales keep depth-wise and 1x1 convs with uneven channel
    ranges accurate);
  - input: int8 per-tensor, scale learned from runtime statistics and then by QAT (`Int8ActPerTensorFloat`);
    the first convolution's input is the image itself, quantized as uint8 pixels with the fixed scale 1/255
    (`PixelQuant`), so a board feeds its camera's bytes straight in;
  - bias: int32 with scale = input scale x weight scale (`Int32Bias`), so it adds onto the int32 accumulator;
  - output: int8 per-tensor (`Int8ActPerTensorFloat`), except the stem (its output is never stored: the
    compiler recomputes it), the last layer (the logits) and the stage heads.
  Every multiply-accumulate therefore has integer operands and an int32 accumulator.
- Every other tensor the deployed program stores between two kernels is int8 too: each `ucm.model.QuantPoint`
  (stem and stage outputs, the residual and skip sums, the norms' outputs, GroupNorm before the upsample)
  becomes an int8 quantizer. Where a QuantPoint's tensor is read by a convolution or linear layer, that
  layer's input quantizer is the QuantPoint's own (one shared scale), so the tensor is quantized once.
- Float only inside a kernel: LayerNorm, GroupNorm, the per-channel plane norm (instance norm), GELU, max-pool,
  bilinear resize, ReLU and the additions compute in float from int8 inputs and are quantized again where
  their result is stored. The norms need a mean, a variance and a reciprocal square root over a whole token
  or plane, which no int8 kernel library provides at acceptable accuracy.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import brevitas.nn as qnn
import torch
from brevitas.core.scaling import ScalingImplType
from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat, Int32Bias, Uint8ActPerTensorFloat
from torch import nn

from ucm.checkpoint import model_from_checkpoint, rebuild_model
from ucm.model import QuantPoint, UCMNet, build_model


@contextmanager
def quiet_brevitas() -> Iterator[None]:
    """Hide Brevitas' warning that its optional fast_hadamard_transform kernels are missing (not used here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")
        yield

INT8_FORMAT = "ucm-edge/int8-qat-v2"  # v2: int8 between every pair of layers (QuantPoints)


class PixelQuant(Uint8ActPerTensorFloat):
    """Model input: uint8 pixels, fixed scale 1/255 (x in [0, 1] -> round(255 x))."""

    scaling_impl_type = ScalingImplType.CONST
    min_val = 0.0
    max_val = 1.0


def _quant_layer(layer: nn.Module, input_quant: Any, output_quant: type | None) -> nn.Module:
    common = dict(
        bias=layer.bias is not None,
        input_quant=input_quant,
        weight_quant=Int8WeightPerChannelFloat,
        bias_quant=Int32Bias if layer.bias is not None else None,
        output_quant=output_quant,
        return_quant_tensor=False,
    )
    if isinstance(layer, nn.Conv2d):
        q = qnn.QuantConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            **common,
        )
    else:
        q = qnn.QuantLinear(layer.in_features, layer.out_features, **common)
    if q.bias_quant is not None:
        # The QCDQ exporter reads the int32 bias scale (input scale x weight scale) from the cache an eval
        # forward pass fills; `export` runs one before exporting.
        q.bias_quant.cache_inference_quant_bias = True
    with torch.no_grad():
        q.weight.copy_(layer.weight)
        if layer.bias is not None:
            q.bias.copy_(layer.bias)
    return q


def shared_input_points(model: UCMNet) -> dict[str, str]:
    """Layer name -> the QuantPoint whose tensor is that layer's input (they share one int8 quantizer)."""
    stages = [f"encoder.{i}" for i in range(len(model.encoder))] + [f"decoder.{i}" for i in range(len(model.decoder))]
    readers = [f"{s}.embed" for s in stages[1 : len(model.encoder)]] + [f"{s}.conv" for s in stages[len(model.encoder):]]
    shared = {"encoder.0.embed": "stem_q", "final_conv": f"{stages[-1]}.out_q"}
    shared.update({reader: f"{stage}.out_q" for stage, reader in zip(stages, readers)})
    shared.update({f"{s}.block.fc1": f"{s}.block.norm_q" for s in stages})
    return shared


def _output_stored(name: str) -> bool:
    """Is the layer's output stored between kernels? Not the stem's (recomputed where it is read), the logits
    or a training-only stage head's."""
    return name not in ("stem", "final") and "head" not in name.split(".")


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def quantize_model(model: UCMNet) -> UCMNet:
    """Swap every QuantPoint and every Conv2d / Linear of `model` (in place) for int8 Brevitas modules."""
    points = [name for name, module in model.named_modules() if isinstance(module, QuantPoint)]
    for name in points:
        _replace(model, name, qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, return_quant_tensor=False))
    shared = shared_input_points(model)
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if type(module) in (nn.Conv2d, nn.Linear)  # exact types: Brevitas layers subclass these
    ]
    for name, module in targets:
        if name in shared:
            input_quant = model.get_submodule(shared[name]).act_quant
        else:
            input_quant = PixelQuant if name == "stem" else Int8ActPerTensorFloat
        output_quant = Int8ActPerTensorFloat if _output_stored(name) else None
        with warnings.catch_warnings():  # a shared proxy: Brevitas says the layer's own input_* defaults go unused
            warnings.filterwarnings("ignore", message="Keyword arguments are being passed but they not being used")
            _replace(model, name, _quant_layer(module, input_quant, output_quant))
    return model


def quant_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (qnn.QuantConv2d, qnn.QuantLinear))]


def float_layers(model: nn.Module) -> list[str]:
    """Names of Conv2d / Linear layers that are still float (should be none)."""
    return [n for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]


def build_qat_model(model_config: dict | None = None) -> UCMNet:
    return quantize_model(build_model(model_config))


def model_from_qat_checkpoint(ckpt: dict[str, Any], path: str | Path) -> UCMNet:
    """Rebuild an int8 QAT UCM-Net from its checkpoint (strictly)."""
    return rebuild_model(ckpt, path, INT8_FORMAT, build_qat_model, "an int8 QAT UCM-Net")


def qat_model_from_float(ckpt: dict[str, Any], path: str | Path) -> UCMNet:
    """The int8 model initialised from a float checkpoint's weights (activation scales not yet calibrated)."""
    return quantize_model(model_from_checkpoint(ckpt, path))


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the deployed parameters (stage heads excluded), as stored for inference.

    Float layers: 4 bytes a parameter. Int8 layers: 1 byte a weight, 4 bytes an int32 bias, 4 bytes a
    per-channel weight scale and 4 bytes for the input scale; the float norms' parameters stay 4 bytes.
    """
    total = 0
    for name, module in model.named_modules():
        parts = name.split(".")
        if "head" in parts:
            continue
        if isinstance(module, (qnn.QuantConv2d, qnn.QuantLinear)):
            total += module.weight.numel() + 4 * module.weight.shape[0] + 4  # int8 weights, per-channel scales, input scale
            total += 0 if module.bias is None else 4 * module.bias.numel()
        elif type(module) in (nn.Conv2d, nn.Linear, nn.LayerNorm, nn.GroupNorm):
            total += 4 * sum(p.numel() for p in module.parameters(recurse=False))
    return total

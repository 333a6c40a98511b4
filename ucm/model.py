"""UCM-Net: a ~46K-parameter MLP + CNN U-Net for skin-lesion segmentation.

Yuan, Zhao, Agaian, "UCM-Net: a lightweight and efficient solution for skin lesion segmentation using MLP
and CNN" (arXiv 2310.09457). Built from `shared/design/ucm-net.md`, which was written from the authors'
published code; the published code, not the paper's pseudocode, produced the published numbers.

Tensors are [B, C, H, W]; "tokens" are the same data as [B, H*W, C].

Deviations from the published code (none changes what the network computes):
- The published `DWConv` carries two unused vectors of length C (weight, bias) that never enter the forward
  pass; they are dropped here. They account for 1,248 parameters: published total 47,436 = ours 46,188
  + 1,248. `UCMNetConfig.count_unused_published_params` gives that figure for the comparison.
- The published code switches between training and inference with a `forward(x, inference_mode)` argument;
  here `self.training` decides: eval mode returns the final logits only, train mode returns
  `(logits, (head_48, head_32, head_24, head_16, head_8))`, the stage heads the group loss uses.
- The stage heads apply their 1x1 conv before the bilinear upsampling to full size, not after: the two
  commute exactly (both are linear and bilinear weights sum to one), and the conv then runs at the stage's
  resolution instead of 256x256.
- Kept as published: the UCM block's residual is detached from the autograd graph and the block output is
  doubled (`x + drop_path(x)` with an identity drop path).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["QuantPoint", "UCMNet", "UCMNetConfig", "UCMBlock", "build_model"]


@dataclass(frozen=True)
class UCMNetConfig:
    """Architecture hyper-parameters. Stored in every checkpoint so it can rebuild its model."""

    channels: tuple[int, ...] = (8, 16, 24, 32, 48, 64)
    in_channels: int = 3
    num_classes: int = 1
    final_channels: int = 3

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "UCMNetConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown UCM-Net config keys {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        if "channels" in d:
            d["channels"] = tuple(int(c) for c in d["channels"])
        return cls(**d)

    @property
    def count_unused_published_params(self) -> int:
        """Parameters of the published code's unused DWConv vectors (2 DWConv x 2 vectors x C per block)."""
        enc = sum(self.channels[1:])
        dec = sum(self.channels[:-1])
        return 4 * (enc + dec)


def input_size_problem(height: int, width: int) -> str | None:
    """Why UCM-Net cannot take a height x width input, or None: six halvings must divide evenly, and the
    1/64-scale bottleneck needs more than one pixel for its plane norm."""
    if height % 64 or width % 64 or min(height, width) < 128:
        return "sides must be multiples of 64 and at least 128 (e.g. 128, 192, 256)"
    return None


class QuantPoint(nn.Identity):
    """Where the int8 model stores a tensor between layers: an identity here, replaced by an int8 quantizer
    in `quantize.model` (so the deployed program keeps this tensor as int8, not float)."""


def _to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def _to_image(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, _, c = x.shape
    return x.transpose(1, 2).reshape(b, c, h, w)


class PlaneNormDWConv(nn.Module):
    """Normalise each channel over its H x W plane (instance norm, no affine), then depth-wise 3x3 conv."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(dim, affine=False)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=True)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return _to_tokens(self.conv(self.norm(_to_image(x, h, w))))


class UCMBlock(nn.Module):
    """LayerNorm -> Linear -> plane-norm DW conv -> GELU -> Linear -> plane-norm DW conv, + residual, doubled."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim)
        self.dw1 = PlaneNormDWConv(dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim, dim)
        self.dw2 = PlaneNormDWConv(dim)
        self.norm_q = QuantPoint()  # read by fc1 and by the residual addition
        self.sum_q = QuantPoint()  # the residual sum, before it is doubled
        self.apply(_init_weights)  # as published: only the UCM blocks get this init; other layers keep torch's

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.norm_q(self.norm(x))
        residual = x.detach()  # as published: the residual carries no gradient
        x = self.dw1(self.fc1(x), h, w)
        x = self.act(x)
        x = self.dw2(self.fc2(x), h, w)
        x = self.sum_q(x + residual)
        return x + x  # published drop-path is an identity: x + drop_path(x) == 2x


class EncoderStage(nn.Module):
    """Patch embedding (1x1 conv, stride 2) -> tokens -> LayerNorm -> UCM block -> LayerNorm -> image."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(c_in, c_out, 1, stride=2)
        self.embed_norm = nn.LayerNorm(c_out)
        self.embed_q = QuantPoint()
        self.block = UCMBlock(c_out)
        self.norm = nn.LayerNorm(c_out)
        self.out_q = QuantPoint()  # the stage output: the next stage's input and a decoder skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        h, w = x.shape[-2:]
        x = self.embed_q(self.embed_norm(_to_tokens(x)))
        x = self.out_q(self.norm(self.block(x, h, w)))
        return _to_image(x, h, w)


class DecoderStage(nn.Module):
    """1x1 conv -> GroupNorm(4) -> bilinear x2 -> ReLU -> + skip -> [head] -> UCM block -> LayerNorm."""

    def __init__(self, c_in: int, c_out: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1)
        self.gn = nn.GroupNorm(4, c_out)
        self.gn_q = QuantPoint()
        self.sum_q = QuantPoint()  # upsampled + skip
        self.block = UCMBlock(c_out)
        self.norm = nn.LayerNorm(c_out)
        self.out_q = QuantPoint()  # the stage output: the next stage's input
        self.head = nn.Conv2d(c_out, num_classes, 1)  # training-only stage head (group loss)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor, head_size: tuple[int, int] | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = F.interpolate(self.gn_q(self.gn(self.conv(x))), scale_factor=2.0, mode="bilinear", align_corners=False)
        x = self.sum_q(F.relu(x) + skip)
        head = None
        if head_size is not None:
            # conv1x1(upsample(x)) == upsample(conv1x1(x)) (both linear, bilinear weights sum to 1): the
            # head runs at the stage's resolution and only its one output channel is upsampled.
            head = F.interpolate(self.head(x), size=head_size, mode="bilinear", align_corners=True)
        h, w = x.shape[-2:]
        x = self.out_q(self.norm(self.block(_to_tokens(x), h, w)))
        return _to_image(x, h, w), head


class UCMNet(nn.Module):
    """UCM-Net. Eval mode: `model(x) -> logits [B, 1, H, W]`. Train mode: `(logits, five stage heads)`.

    Input: RGB in [0, 1], no mean/std normalisation, H and W multiples of 64 and at least 128.
    """

    def __init__(self, config: UCMNetConfig = UCMNetConfig()) -> None:
        super().__init__()
        if len(config.channels) != 6:
            raise ValueError(f"UCM-Net has six stages; got channels={config.channels}")
        self.config = config
        c = config.channels
        self.stem = nn.Conv2d(config.in_channels, c[0], 3, padding=1)
        self.stem_gn = nn.GroupNorm(4, c[0])
        self.stem_q = QuantPoint()  # the stem output: the first encoder stage's input and the last skip
        self.encoder = nn.ModuleList(EncoderStage(c[i], c[i + 1]) for i in range(5))
        self.decoder = nn.ModuleList(DecoderStage(c[i + 1], c[i], config.num_classes) for i in reversed(range(5)))
        self.final_conv = nn.Conv2d(c[0], config.final_channels, 1)
        self.final = nn.Conv2d(config.final_channels, config.num_classes, 1)

    def forward(self, x: torch.Tensor):
        problem = input_size_problem(*x.shape[-2:])
        if problem:
            raise ValueError(f"UCM-Net input of shape {tuple(x.shape)}: {problem}")
        head_size = tuple(x.shape[-2:]) if self.training else None
        x = self.stem_q(F.relu(F.max_pool2d(self.stem_gn(self.stem(x)), 2)))
        skips = [x]
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        heads = []
        for stage, skip in zip(self.decoder, reversed(skips[:-1])):
            x, head = stage(x, skip, head_size)
            heads.append(head)
        x = F.interpolate(self.final_conv(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        logits = self.final(F.relu(x))
        if self.training:
            return logits, tuple(heads)
        return logits

    def head_parameters(self) -> int:
        return sum(p.numel() for stage in self.decoder for p in stage.head.parameters())


def _init_weights(m: nn.Module) -> None:
    """The published UCM-block initialisation: truncated normal for Linear, fan-out He normal for conv."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_model(config: UCMNetConfig | dict | None = None) -> UCMNet:
    if config is None:
        config = UCMNetConfig()
    elif isinstance(config, dict):
        config = UCMNetConfig.from_dict(config)
    return UCMNet(config)

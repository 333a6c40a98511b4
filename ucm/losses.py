"""Segmentation losses of the paper: BCE + Dice, BCE + squared Dice (eq. 3), and the group loss (eq. 8)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

SMOOTH = 1e-5
# Weights of the five stage heads, in the decoder's order (48, 32, 24, 16, 8 channels): deepest smallest.
STAGE_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5)


def _flat(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.sigmoid(logits).flatten(1), target.flatten(1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = SMOOTH) -> torch.Tensor:
    """1 - (2 sum(p y) + s) / (sum p + sum y + s), per image, averaged over the batch."""
    p, y = _flat(logits, target)
    dice = (2 * (p * y).sum(1) + smooth) / (p.sum(1) + y.sum(1) + smooth)
    return (1 - dice).mean()


def squared_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = SMOOTH) -> torch.Tensor:
    """Paper eq. 3: 1 - (2 (sum p y)^2 + s) / ((sum p)^2 + (sum y)^2 + s), per image, averaged over the batch."""
    p, y = _flat(logits, target)
    inter = (p * y).sum(1)
    dice = (2 * inter.square() + smooth) / (p.sum(1).square() + y.sum(1).square() + smooth)
    return (1 - dice).mean()


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target) + dice_loss(logits, target)


def bce_squared_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target) + squared_dice_loss(logits, target)


def group_loss(
    logits: torch.Tensor,
    stage_logits: Sequence[torch.Tensor],
    target: torch.Tensor,
    weights: Sequence[float] = STAGE_WEIGHTS,
) -> torch.Tensor:
    """Paper eq. 8: base(output) + sum_i w_i base(stage head i), base = BCE + squared Dice."""
    if len(stage_logits) != len(weights):
        raise ValueError(f"group loss needs {len(weights)} stage outputs, got {len(stage_logits)}")
    loss = bce_squared_dice_loss(logits, target)
    for w, stage in zip(weights, stage_logits):
        loss = loss + w * bce_squared_dice_loss(stage, target)
    return loss

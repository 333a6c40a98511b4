"""The paper's two metric definitions at threshold 0.5.

- mIoU / mDice: IoU and Dice of each image, then the mean over images. An image whose prediction and ground
  truth are both empty scores 1 (a perfect answer).
- IoU* / Dice*: IoU and Dice of the whole data set, from TP / FP / FN summed over all pixels of all images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

THRESHOLD = 0.5


def binarize_logits(logits: torch.Tensor) -> torch.Tensor:
    """sigmoid(logits) > 0.5, i.e. logits > 0."""
    return logits > 0


@dataclass
class SegmentationMeter:
    """Accumulates per-image counts; `summary()` gives miou, mdice, miou_star, mdice_star, n_images."""

    per_image_iou: list[float] = field(default_factory=list)
    per_image_dice: list[float] = field(default_factory=list)
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: boolean (or {0,1}) masks [B, ...]; each leading index is one image."""
        pred = pred.bool().flatten(1)
        target = target.bool().flatten(1)
        tp = (pred & target).sum(1).double()
        fp = (pred & ~target).sum(1).double()
        fn = (~pred & target).sum(1).double()
        union = tp + fp + fn
        empty = union == 0
        iou = torch.where(empty, torch.ones_like(tp), tp / union.clamp(min=1))
        dice = torch.where(empty, torch.ones_like(tp), 2 * tp / (2 * tp + fp + fn).clamp(min=1))
        self.per_image_iou.extend(iou.tolist())
        self.per_image_dice.extend(dice.tolist())
        self.tp += int(tp.sum())
        self.fp += int(fp.sum())
        self.fn += int(fn.sum())

    def summary(self) -> dict[str, float | int]:
        n = len(self.per_image_iou)
        if n == 0:
            raise ValueError("no images were scored")
        union = self.tp + self.fp + self.fn
        return {
            "miou": sum(self.per_image_iou) / n,
            "mdice": sum(self.per_image_dice) / n,
            "miou_star": self.tp / union if union else 1.0,
            "mdice_star": 2 * self.tp / (2 * self.tp + self.fp + self.fn) if union else 1.0,
            "n_images": n,
        }


@dataclass(frozen=True)
class LogitAgreement:
    """How closely two runtimes agree on the same images: masks (logits > 0) and raw logits."""

    n_images: int
    pixel_agreement: float
    logits_max_abs_diff: float
    rmse: float
    mae: float
    cosine: float


def logit_agreement(logits: np.ndarray, reference: np.ndarray) -> LogitAgreement:
    """Agreement of two stacks of logits [N, ...] of the same images (float64 sums)."""
    d, r = np.asarray(logits, np.float64), np.asarray(reference, np.float64)
    if d.shape != r.shape:
        raise ValueError(f"logits of shape {d.shape} and {r.shape} cannot be compared")
    diff = d - r
    return LogitAgreement(
        n_images=int(d.shape[0]),
        pixel_agreement=float(((d > 0) == (r > 0)).mean()),
        logits_max_abs_diff=float(np.abs(diff).max()),
        rmse=float(np.sqrt((diff ** 2).mean())),
        mae=float(np.abs(diff).mean()),
        cosine=float((d * r).sum() / max(np.linalg.norm(d) * np.linalg.norm(r), 1e-30)),
    )

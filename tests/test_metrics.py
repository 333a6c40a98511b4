import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

from ucm.metrics import SegmentationMeter, binarize_logits


def _reference(preds, targets):
    ious, dices, tot = [], [], np.zeros((2, 2), int)
    for p, t in zip(preds, targets):
        cm = confusion_matrix(t.ravel(), p.ravel(), labels=[0, 1])
        tot += cm
        tn, fp, fn, tp = cm.ravel()
        ious.append(1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn))
        dices.append(1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
    tn, fp, fn, tp = tot.ravel()
    return np.mean(ious), np.mean(dices), tp / (tp + fp + fn), 2 * tp / (2 * tp + fp + fn)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_sklearn_confusion_matrix(seed):
    rng = np.random.default_rng(seed)
    preds = rng.random((10, 1, 16, 16)) > rng.random((10, 1, 1, 1))
    targets = rng.random((10, 1, 16, 16)) > rng.random((10, 1, 1, 1))
    preds[0] = False  # empty prediction, non-empty truth
    targets[1] = False  # empty truth, non-empty prediction
    preds[2] = targets[2] = False  # both empty: a perfect answer
    meter = SegmentationMeter()
    meter.update(torch.from_numpy(preds[:4]), torch.from_numpy(targets[:4]))
    meter.update(torch.from_numpy(preds[4:]), torch.from_numpy(targets[4:]))
    got = meter.summary()
    miou, mdice, iou_star, dice_star = _reference(preds.astype(int), targets.astype(int))
    assert got["n_images"] == 10
    assert got["miou"] == pytest.approx(miou)
    assert got["mdice"] == pytest.approx(mdice)
    assert got["miou_star"] == pytest.approx(iou_star)
    assert got["mdice_star"] == pytest.approx(dice_star)


def test_threshold_is_half_probability():
    logits = torch.tensor([-1.0, -1e-6, 0.0, 1e-6, 1.0])
    assert binarize_logits(logits).tolist() == [False, False, False, True, True]


def test_empty_meter_raises():
    with pytest.raises(ValueError):
        SegmentationMeter().summary()

import torch
import torch.nn.functional as F

from ucm.losses import bce_dice_loss, bce_squared_dice_loss, dice_loss, group_loss, squared_dice_loss


def _manual_squared_dice(logits, target, s=1e-5):
    losses = []
    for p, y in zip(torch.sigmoid(logits), target):
        p, y = p.double(), y.double()
        losses.append(1 - (2 * (p * y).sum() ** 2 + s) / (p.sum() ** 2 + y.sum() ** 2 + s))
    return torch.stack(losses).mean()


def test_squared_dice_is_paper_eq3():
    torch.manual_seed(0)
    logits, target = torch.randn(4, 1, 16, 16), (torch.rand(4, 1, 16, 16) > 0.5).float()
    torch.testing.assert_close(squared_dice_loss(logits, target).double(), _manual_squared_dice(logits, target), atol=1e-6, rtol=0)
    expected = F.binary_cross_entropy(torch.sigmoid(logits), target) + _manual_squared_dice(logits, target)
    torch.testing.assert_close(bce_squared_dice_loss(logits, target).double(), expected.double(), atol=1e-5, rtol=0)


def test_dice_perfect_prediction_is_zero():
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    logits = (target * 2 - 1) * 50
    assert dice_loss(logits, target) < 1e-4
    assert squared_dice_loss(logits, target) < 1e-4
    assert bce_dice_loss(logits, target) < 1e-3


def test_group_loss_weights_deepest_head_least():
    torch.manual_seed(0)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    final = torch.randn(2, 1, 8, 8)
    perfect = (target * 2 - 1) * 50
    bad = -perfect
    base = bce_squared_dice_loss(final, target)
    heads_bad_deep = [bad] + [perfect] * 4
    heads_bad_shallow = [perfect] * 4 + [bad]
    loss_deep = group_loss(final, heads_bad_deep, target)
    loss_shallow = group_loss(final, heads_bad_shallow, target)
    bad_base = bce_squared_dice_loss(bad, target)
    torch.testing.assert_close(loss_deep, base + 0.1 * bad_base, atol=2e-3, rtol=0)
    torch.testing.assert_close(loss_shallow, base + 0.5 * bad_base, atol=2e-3, rtol=0)

"""ReconHead h' (Eq. 5): output shape, time conditioning, L_R value, target resizing."""
import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401


def _feats(n=2):
    torch.manual_seed(0)
    return [torch.randn(n, c, 16 // s, 16 // s) for c, s in
            zip((8, 16, 24, 32), (1, 2, 4, 8))]


def test_full_head_shape_time_dependence_and_mse():
    head = MODELS.build(dict(type='ReconHead', in_channels=[8, 16, 24, 32],
                             channels=16, loss_weight=1.0))
    feats = _feats()
    t = torch.tensor([3, 90])
    pred = head(feats, t)
    assert pred.shape == (2, 3, 16, 16)
    assert not torch.allclose(pred, head(feats, torch.tensor([90, 3])))
    target = torch.randn(2, 3, 16, 16)
    assert head.loss(feats, t, target).item() == pytest.approx(
        ((pred - target) ** 2).mean().item(), rel=1e-6)
    # full-resolution target is area-downsampled to the prediction's grid
    big = torch.randn(2, 3, 64, 64)
    assert head.loss(feats, t, big).item() == pytest.approx(
        ((pred - F.avg_pool2d(big, 4)) ** 2).mean().item(), rel=1e-5)
    head.loss(feats, t, target).backward()
    assert all(p.grad is not None for p in head.parameters())


def test_linear_head_reads_finest_level_only():
    head = MODELS.build(dict(type='ReconHead', in_channels=[8, 16, 24, 32],
                             arch='linear', loss_weight=1.0))
    feats = _feats()
    pred = head(feats, torch.tensor([0, 0]))
    ref = F.conv2d(feats[0], head.pred.weight, head.pred.bias)
    assert torch.allclose(pred, ref, atol=1e-6)
    assert sum(p.numel() for p in head.parameters()) == 8 * 3 + 3
    with pytest.raises(ValueError, match="'full' or 'linear'"):
        MODELS.build(dict(type='ReconHead', arch='unet', loss_weight=1.0))

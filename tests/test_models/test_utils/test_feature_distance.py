"""ImageNet feature distance helpers (DAFormer Eq. 5-6)."""
import pytest
import torch

import mmseg_dida  # noqa: F401
from mmseg_dida.models.utils.feature_distance import (
    downscale_label_ratio,
    masked_feat_dist,
    thing_class_mask,
)


def test_downscale_label_ratio_majority_and_min_ratio():
    gt = torch.tensor([[1, 1, 2, 2],
                       [1, 1, 2, 3],
                       [255, 255, 0, 0],
                       [255, 4, 0, 0]]).view(1, 1, 4, 4)
    out = downscale_label_ratio(gt, 2, 0.75, num_classes=5)
    # Block ratios: 1 -> 4/4, 2 -> 3/4, 255 -> 3/4 (stays ignore), 0 -> 4/4.
    assert out.tolist() == [[[[1, 2], [255, 0]]]]
    out = downscale_label_ratio(gt, 2, 0.8, num_classes=5)
    assert out.tolist() == [[[[1, 255], [255, 0]]]]
    out4 = downscale_label_ratio(gt, 4, 0.0, num_classes=5)
    assert out4.shape == (1, 1, 1, 1)
    with pytest.raises(ValueError, match=r'\(N, 1, H, W\)'):
        downscale_label_ratio(gt[0], 2, 0.75, 5)


def test_thing_class_mask_and_masked_distance():
    gt = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    gt[..., :4, :4] = 11  # a person block
    mask = thing_class_mask(gt, (2, 2), classes=(11, 12), min_ratio=0.75,
                            num_classes=19)
    assert mask.tolist() == [[[True, False], [False, False]]]
    f = torch.zeros(1, 4, 2, 2)
    g = torch.zeros(1, 4, 2, 2)
    g[0, :, 0, 0] = torch.tensor([3.0, 4.0, 0.0, 0.0])   # distance 5 at the thing pixel
    g[0, :, 1, 1] = torch.tensor([1.0, 0.0, 0.0, 0.0])   # distance 1 elsewhere
    assert masked_feat_dist(f, g, mask).item() == pytest.approx(5.0)
    assert masked_feat_dist(f, g).item() == pytest.approx(6.0 / 4)
    assert masked_feat_dist(f, g, mask, denominator=2.0).item() == pytest.approx(2.5)
    # No selected pixel: 0, still in the graph (DAFormer would give NaN).
    f.requires_grad_()
    empty = masked_feat_dist(f, g, torch.zeros_like(mask))
    assert empty.item() == 0.0 and empty.requires_grad
    # Gradient of the L2 distance w.r.t. f at the masked pixel: (f - g) / |f - g|.
    masked_feat_dist(f, g, mask).backward()
    assert torch.allclose(f.grad[0, :, 0, 0], torch.tensor([-0.6, -0.8, 0.0, 0.0]))
    assert f.grad[0, :, 1, 1].abs().sum() == 0

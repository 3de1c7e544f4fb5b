"""ClassMix and the DACS strong augmentation, checked by their math."""
import math

import pytest
import torch

import mmseg_dida  # noqa: F401
from mmseg_dida.models.utils.mixing import class_mix, get_class_masks
from mmseg_dida.models.utils.strong_transforms import (
    StrongAugmentation,
    blur_kernel_size,
    color_jitter,
    gaussian_blur,
    hsv_to_rgb,
    rgb_to_hsv,
)


def _labels():
    g = torch.Generator().manual_seed(0)
    lbl = torch.randint(0, 5, (3, 1, 16, 20), generator=g)
    lbl[0, 0, :2] = 255
    return lbl


def test_class_masks_pick_half_of_batch_classes_whole_class_regions():
    lbl = _labels()
    classes = torch.unique(lbl)  # 0..4 and 255 over the whole batch: 6 classes
    assert classes.numel() == 6
    masks = get_class_masks(lbl, generator=torch.Generator().manual_seed(1))
    assert masks.shape == (3, 1, 16, 20) and masks.dtype == torch.float32
    for i in range(3):
        chosen = torch.unique(lbl[i][masks[i].bool()])
        # A class is either entirely in or entirely out of the mask.
        for c in torch.unique(lbl[i]):
            region = masks[i][lbl[i] == c]
            assert region.min() == region.max()
        # ceil(6 / 2) = 3 classes are picked from the batch set; those present in
        # image i are in its mask.
        assert chosen.numel() <= 3
    # Odd count: 5 classes -> 3 picked; a class present in every pixel of image 0.
    lbl5 = torch.arange(5).repeat_interleave(4).view(1, 1, 4, 5)
    m = get_class_masks(lbl5, generator=torch.Generator().manual_seed(0))
    assert m.sum() == 3 * 4


def test_class_mix_image_label_weight_consistency():
    lbl = _labels()
    masks = get_class_masks(lbl, generator=torch.Generator().manual_seed(3))
    src = torch.randn(3, 3, 16, 20)
    tgt = torch.randn(3, 3, 16, 20)
    pl = torch.randint(0, 5, (3, 16, 20))
    q = torch.full((3, 16, 20), 0.4)
    img = class_mix(masks, src, tgt)
    mixed_lbl = class_mix(masks, lbl[:, 0], pl)
    w = class_mix(masks, torch.ones_like(q), q)
    m = masks.bool()[:, 0]
    # Where the mask is on: source pixel, source label, weight 1; else target/pseudo/q.
    assert torch.equal(img.permute(0, 2, 3, 1)[m], src.permute(0, 2, 3, 1)[m])
    assert torch.equal(img.permute(0, 2, 3, 1)[~m], tgt.permute(0, 2, 3, 1)[~m])
    assert torch.equal(mixed_lbl[m], lbl[:, 0][m])
    assert torch.equal(mixed_lbl[~m], pl[~m])
    assert mixed_lbl.dtype == lbl.dtype
    assert torch.all(w[m] == 1) and torch.allclose(w[~m], torch.tensor(0.4))
    # Gradients flow to both images through the mix.
    s, t = src.clone().requires_grad_(), tgt.clone().requires_grad_()
    class_mix(masks, s, t).sum().backward()
    assert torch.equal(s.grad[:, 0], masks[:, 0]) and torch.equal(t.grad[:, 0],
                                                                  1 - masks[:, 0])
    with pytest.raises(ValueError, match='do not match'):
        class_mix(masks, src, tgt[:, :, :8])


def test_hsv_round_trip_and_known_values():
    x = torch.rand(3, 8, 9, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    h, s, v = rgb_to_hsv(red).flatten().tolist()
    assert (h, s, v) == (0.0, 1.0, 1.0)
    green = torch.tensor([0.0, 0.5, 0.0]).view(3, 1, 1)
    assert torch.allclose(rgb_to_hsv(green).flatten(),
                          torch.tensor([2 * math.pi / 3, 1.0, 0.5]))


def test_color_jitter_identity_at_zero_strength_and_bounded():
    x = torch.rand(3, 10, 12, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(color_jitter(x, 0.0), x, atol=1e-5)
    y = color_jitter(x, 0.5, torch.Generator().manual_seed(2))
    assert y.min() >= 0 and y.max() <= 1 and not torch.allclose(x, y)


def test_blur_kernel_and_blur_invariants():
    # ~10% of the side, odd (DACS formula): 512 -> 51, 1024 -> 103, 128 -> 13, 20 -> 1.
    assert [blur_kernel_size(s) for s in (512, 1024, 128, 256, 20)] == [51, 103, 13,
                                                                       25, 1]
    const = torch.full((3, 40, 50), 2.5)
    assert torch.allclose(gaussian_blur(const, 0.8), const, atol=1e-5)
    x = torch.randn(3, 40, 50, generator=torch.Generator().manual_seed(0))
    y = gaussian_blur(x, 1.0)
    assert y.shape == x.shape and y.var() < x.var()
    # Impulse response far from borders is the normalised separable Gaussian.
    imp = torch.zeros(1, 41, 51)
    imp[0, 20, 25] = 1.0
    out = gaussian_blur(imp, 1.0)
    assert torch.isclose(out.sum(), torch.tensor(1.0), atol=1e-5)
    assert torch.isclose(out[0, 20, 26] / out[0, 20, 25], torch.tensor(math.exp(-0.5)),
                         atol=1e-5)


def test_strong_augmentation_decisions_and_normalisation():
    mean = torch.tensor([123.675, 116.28, 103.53])
    std = torch.tensor([58.395, 57.12, 57.375])
    raw = torch.rand(2, 3, 30, 40, generator=torch.Generator().manual_seed(0)) * 255
    imgs = (raw - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    # Jitter disabled (probability 1) and no blur: identity.
    off = StrongAugmentation(0.2, 1.0, blur=False)
    assert torch.equal(off(imgs, mean, std), imgs)
    # Jitter at strength 0 and no blur: identity up to the [0, 255] round trip.
    zero = StrongAugmentation(0.0, 0.0, blur=False)
    assert torch.allclose(zero(imgs, mean, std), imgs, atol=1e-4)
    # Jittered output stays inside the normalised image of [0, 255].
    aug = StrongAugmentation(0.2, 0.0, blur=True)
    out = aug(imgs, mean, std, generator=torch.Generator().manual_seed(0))
    back = out * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    assert back.min() > -1e-3 and back.max() < 255 + 1e-3
    assert not torch.allclose(out, imgs)
    with pytest.raises(ValueError, match='color_jitter_probability'):
        StrongAugmentation(0.2, 1.5)

"""Numerical tests of the DiDA degradations (schedules, Eq. 1, blur, mask)."""
import math

import pytest
import torch
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.models.utils.degradation import (
    blur_sigmas,
    cosine_abar,
    forward_diffuse,
    gaussian_blur,
    linear_abar,
    make_abar,
    mask_degrade,
    sample_noise,
    sigmoid_abar,
    upsample_noise,
)


def _chen_gamma(s, start=-3.0, end=3.0, tau=1.0):
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    return (sig(end / tau) - sig((s * (end - start) + start) / tau)) / (
        sig(end / tau) - sig(start / tau))


@pytest.mark.parametrize('t', [0, 24, 49, 74])
def test_sigmoid_schedule_closed_form(t):
    abar = sigmoid_abar(100)
    assert abar[t].item() == pytest.approx(_chen_gamma((t + 1) / 100), rel=1e-9)


def test_sigmoid_schedule_known_values_and_end():
    abar = sigmoid_abar(100)
    expected = {0: 0.99697, 24: 0.85087, 49: 0.5, 74: 0.14913}
    for t, v in expected.items():
        assert abar[t].item() == pytest.approx(v, abs=1e-4)
    # t = 99: gamma clips to 1e-9, beta clips to 0.999 -> abar_99 = abar_98 * 1e-3
    assert abar[99].item() == pytest.approx(abar[98].item() * 1e-3, rel=1e-9)
    assert abar[99].item() < 1e-5
    assert torch.all(abar[1:] < abar[:-1])


def test_linear_and_cosine_schedules():
    lin = linear_abar(100)
    betas = torch.linspace(1e-3, 0.2, 100, dtype=torch.float64)
    assert torch.allclose(lin, torch.cumprod(1 - betas, 0))
    cos = cosine_abar(100)
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 24, 49, 74):
        assert cos[t].item() == pytest.approx(f((t + 1) / 100) / f(0), rel=1e-9)
    assert torch.all(cos[1:] < cos[:-1])
    with pytest.raises(ValueError, match='schedule must be one of'):
        make_abar('quadratic', 10)


def test_forward_process_mean_and_variance():
    torch.manual_seed(0)
    abar = sigmoid_abar(100).float()
    t = torch.tensor([0, 24, 49, 74])
    x0 = torch.full((4, 3, 128, 128), 1.5)
    eps = sample_noise(x0.shape, downsample=1)
    xt = forward_diffuse(x0, t, abar, eps)
    for i, ti in enumerate(t.tolist()):
        a = abar[ti].item()
        assert xt[i].mean().item() == pytest.approx(math.sqrt(a) * 1.5, abs=0.02)
        assert xt[i].var().item() == pytest.approx(1 - a, rel=0.03, abs=1e-4)
    # exact linearity: x_t - sqrt(a) x0 == sqrt(1-a) eps
    a = abar[t].view(-1, 1, 1, 1)
    assert torch.allclose(xt - a.sqrt() * x0, (1 - a).sqrt() * eps, atol=1e-6)


@pytest.mark.parametrize('size,factor', [((32, 48), 2), ((32, 48), 4), ((32, 64), 8),
                                         ((20, 36), 4)])
def test_upsampled_noise_has_exactly_unit_variance_at_every_pixel(size, factor):
    """The variance of each output pixel of the (linear) upsampling of i.i.d. N(0, 1)
    draws is the sum of its squared coefficients; reading them off the images of
    unit impulses gives it exactly, borders included."""
    h, w = size
    lh, lw = h // factor, w // factor
    impulses = torch.eye(lh * lw, dtype=torch.float64).view(lh * lw, 1, lh, lw)
    coeffs = upsample_noise(impulses, (h, w))  # (inputs, 1, h, w)
    torch.testing.assert_close(coeffs.pow(2).sum(0)[0],
                               torch.ones(h, w, dtype=torch.float64))
    # plain bilinear upsampling, what the noise was before, is far from it
    plain = torch.nn.functional.interpolate(impulses, size=(h, w), mode='bilinear',
                                            align_corners=False)
    assert plain.pow(2).sum(0).mean().item() < 0.6


@pytest.mark.parametrize('factor', [2, 4, 8])
def test_lowres_noise_added_has_unit_variance_and_stays_smooth(factor):
    g = torch.Generator().manual_seed(0)
    eps = sample_noise((256, 3, 64, 64), downsample=factor, generator=g)
    assert eps.shape == (256, 3, 64, 64)
    assert eps.mean().item() == pytest.approx(0.0, abs=0.03)
    assert eps.var().item() == pytest.approx(1.0, abs=0.03)  # bilinear: 0.39-0.44
    # by position inside the upsampling block (pooled over the image): no grid of
    # low/high variance (plain bilinear 4x: 0.28 to 0.61 by position)
    per_pixel = eps.var(dim=(0, 1))
    by_phase = per_pixel.view(64 // factor, factor, 64 // factor, factor).mean((0, 2))
    torch.testing.assert_close(by_phase, torch.ones(factor, factor), atol=0.04, rtol=0)
    # still the smooth blobs of a low-resolution draw: neighbours correlate
    corr = torch.corrcoef(torch.stack([eps[..., :-1].flatten(),
                                       eps[..., 1:].flatten()]))[0, 1]
    assert corr > 0.5
    with pytest.raises(ValueError, match='divide'):
        sample_noise((1, 3, 30, 30), downsample=4)


def test_blur_monotone_in_t():
    sig = blur_sigmas(100)
    assert sig[0].item() == pytest.approx(1.0)
    assert sig[1].item() == pytest.approx(math.sqrt(1 + math.exp(0.04)))
    assert torch.all(sig[1:] > sig[:-1])
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    tv = []
    for t in (0, 10, 40, 99):
        y = gaussian_blur(x, sig[[t]].float())
        tv.append((y[..., 1:, :] - y[..., :-1, :]).abs().mean().item())
    assert all(a > b for a, b in zip(tv, tv[1:]))
    # blur preserves the mean of a constant image and zero sigma is identity
    c = torch.full((1, 1, 16, 16), 3.0)
    assert torch.allclose(gaussian_blur(c, torch.tensor([5.0])), c, atol=1e-5)
    assert torch.equal(gaussian_blur(x, torch.tensor([0.0])), x)


def test_mask_keep_fraction_equals_abar_and_monotone():
    abar = sigmoid_abar(100).float()
    x = torch.randn(4, 3, 32, 32) + 5.0
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 24, 49, 74])
    xt, mask = mask_degrade(x, abar[t], generator=g)
    kept = mask.flatten(1).mean(1)
    assert torch.allclose(kept, abar[t], atol=1.0 / 1024)
    assert torch.all(kept[1:] < kept[:-1])
    assert torch.equal(xt * (1 - mask), torch.zeros_like(xt))
    assert torch.equal(xt * mask, x * mask)


def test_degradation_module_pair_sharing_and_targets():
    deg = MODELS.build(dict(type='Degradation'))
    assert deg.abar.shape == (100, ) and deg.target_name == 'eps'
    src = torch.zeros(2, 3, 32, 32)
    tgt = torch.zeros(2, 3, 32, 32)
    # the paper's eps: per pixel, at the image's resolution
    out = deg.degrade_pair(src, tgt, generator=torch.Generator().manual_seed(1))
    assert deg.noise_downsample == 1 and out['target'].shape == (4, 3, 32, 32)
    a = deg.abar[out['t']].view(-1, 1, 1, 1)
    torch.testing.assert_close(out['x_t'], (1 - a).sqrt() * out['target'])
    deg = MODELS.build(dict(type='Degradation', noise_downsample=4))
    g = torch.Generator().manual_seed(1)
    out = deg.degrade_pair(src, tgt, generator=g)
    assert torch.equal(out['t'][:2], out['t'][2:])
    # the target is the eps that was added, at the images' resolution
    assert out['target'].shape == (4, 3, 32, 32)
    assert torch.equal(out['target'][:2], out['target'][2:])
    a = deg.abar[out['t']].view(-1, 1, 1, 1)
    torch.testing.assert_close(out['x_t'], (1 - a).sqrt() * out['target'])
    assert torch.equal(out['x_t'][:2], out['x_t'][2:])
    deg2 = MODELS.build(dict(type='Degradation', share_t=False, share_noise=False,
                             noise_downsample=1))
    out2 = deg2.degrade_pair(src, tgt, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(out2['target'][:2], out2['target'][2:])
    blur = MODELS.build(dict(type='Degradation', kind='blur'))
    x = torch.randn(2, 3, 16, 16)
    xt, target = blur(x, torch.tensor([0, 50]))
    assert target is x and blur.target_name == 'x0'
    with pytest.raises(ValueError, match='kind must be one of'):
        MODELS.build(dict(type='Degradation', kind='jpeg'))


def test_degradation_draws_from_its_own_generator():
    """t and eps come from the module's generator: the global random stream (the rest
    of the training step) is untouched, the draws are reproducible from the run's
    seed, and a saved generator state resumes the same stream."""
    src, tgt = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    torch.manual_seed(7)
    deg = MODELS.build(dict(type='Degradation'))
    assert deg.rng_state() is None
    global_before = torch.get_rng_state()
    first = deg.degrade_pair(src, tgt)
    assert torch.equal(torch.get_rng_state(), global_before)
    state = deg.rng_state()
    second = deg.degrade_pair(src, tgt)
    assert not torch.equal(first['x_t'], second['x_t'])
    # same seed -> same draws
    torch.manual_seed(7)
    again = MODELS.build(dict(type='Degradation'))
    assert torch.equal(again.degrade_pair(src, tgt)['x_t'], first['x_t'])
    # resume from the saved state -> the second draw again
    resumed = MODELS.build(dict(type='Degradation', seed=123))
    resumed.set_rng_state(state)
    out = resumed.degrade_pair(src, tgt)
    assert torch.equal(out['x_t'], second['x_t']) and torch.equal(out['t'], second['t'])
    # another run seed -> other draws; an explicit seed ignores the run seed
    torch.manual_seed(8)
    other = MODELS.build(dict(type='Degradation'))
    assert not torch.equal(other.degrade_pair(src, tgt)['x_t'], first['x_t'])
    fixed = [MODELS.build(dict(type='Degradation', seed=5)) for _ in range(2)]
    torch.manual_seed(1)
    a = fixed[0].sample_t(8)
    torch.manual_seed(2)
    assert torch.equal(fixed[1].sample_t(8), a)


@pytest.mark.parametrize('factor', [1, 2, 4])
def test_target_is_the_noise_added_with_unit_variance(factor):
    """L_R's target is the eps of Eq. 1 that x_t holds: x_t - sqrt(abar_t) x_0 =
    sqrt(1 - abar_t) target at every pixel, and that eps is unit-variance (so x_t
    has Eq. 1's signal-to-noise ratio) for every noise_downsample."""
    deg = MODELS.build(dict(type='Degradation', noise_downsample=factor, seed=3))
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randn(16, 3, 32, 48, generator=g), torch.randn(16, 3, 32, 48,
                                                                    generator=g)
    out = deg.degrade_pair(src, tgt)
    x0 = torch.cat([src, tgt])
    a = deg.abar[out['t']].view(-1, 1, 1, 1)
    added = (out['x_t'] - a.sqrt() * x0) / (1 - a).sqrt()
    assert out['target'].shape == x0.shape
    torch.testing.assert_close(added, out['target'], atol=2e-4, rtol=1e-4)
    assert added.var().item() == pytest.approx(1.0, abs=0.03)
    # x_t's noise power is 1 - abar_t (plain bilinear 4x: 0.43 (1 - abar_t))
    noise_var = (out['x_t'] - a.sqrt() * x0).flatten(1).var(1)
    assert (noise_var / (1 - a.flatten())).mean().item() == pytest.approx(1.0, abs=0.1)


def test_a_passed_lowres_draw_is_upsampled_with_unit_variance():
    """A fixed low-resolution draw (the DiDA hook's pictures, the bridge curve) is
    upsampled like the module's own draws, and the target is what was added."""
    deg = MODELS.build(dict(type='Degradation', noise_downsample=4))
    low = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    x0 = torch.zeros(32, 3, 32, 32)
    t = torch.full((32, ), 99)
    x_t, target = deg(x0, t, noise=low)
    torch.testing.assert_close(target, upsample_noise(low, (32, 32)))
    torch.testing.assert_close(x_t, (1 - deg.abar[99]).sqrt() * target)
    assert target.var().item() == pytest.approx(1.0, abs=0.03)

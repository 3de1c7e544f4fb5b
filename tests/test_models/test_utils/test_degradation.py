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
    eps, full = sample_noise(x0.shape, downsample=1)
    assert eps is full
    xt = forward_diffuse(x0, t, abar, eps)
    for i, ti in enumerate(t.tolist()):
        a = abar[ti].item()
        assert xt[i].mean().item() == pytest.approx(math.sqrt(a) * 1.5, abs=0.02)
        assert xt[i].var().item() == pytest.approx(1 - a, rel=0.03, abs=1e-4)
    # exact linearity: x_t - sqrt(a) x0 == sqrt(1-a) eps
    a = abar[t].view(-1, 1, 1, 1)
    assert torch.allclose(xt - a.sqrt() * x0, (1 - a).sqrt() * eps, atol=1e-6)


def test_lowres_noise_is_upsampled_target():
    torch.manual_seed(0)
    low, full = sample_noise((2, 3, 32, 48), downsample=4)
    assert low.shape == (2, 3, 8, 12) and full.shape == (2, 3, 32, 48)
    # bilinear upsampling then 4x4 average pooling ~ returns the low-res draw
    back = torch.nn.functional.avg_pool2d(full, 4)
    assert torch.corrcoef(torch.stack([back.flatten(), low.flatten()]))[0, 1] > 0.8
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
    assert out['target'].shape == (4, 3, 8, 8)
    assert torch.equal(out['target'][:2], out['target'][2:])
    # zero images -> x_t is exactly sqrt(1-abar_t) * upsampled eps, same for src and tgt
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

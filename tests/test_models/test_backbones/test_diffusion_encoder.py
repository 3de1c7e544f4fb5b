"""DiffusionEncoder: no-t path is exactly g, Eq. 4 FiLM fusion, g' init, gradients."""
import math

import pytest
import torch
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.models.backbones.diffusion_encoder import DiffusionEncoder
from mmseg_dida.models.utils.memory_saving import MEMORY_SAVING
from mmseg_dida.models.utils.time_embedding import TimeFiLM, sinusoidal_embedding
from tests.helpers.uda import FLAT_MIT

TINY_MIT = FLAT_MIT


def _build(mode='full', **kw):
    torch.manual_seed(0)
    enc = MODELS.build(
        dict(type='DiffusionEncoder', backbone=TINY_MIT, mode=mode, **kw))
    enc.init_weights()
    return enc


def test_sinusoidal_embedding_values_and_film_shapes():
    t = torch.tensor([0, 5, 99])
    e = sinusoidal_embedding(t, 16)
    assert e.shape == (3, 16)
    assert torch.equal(e[0, :8], torch.ones(8))
    assert torch.equal(e[0, 8:], torch.zeros(8))
    w1 = 10000.0 ** (-1 / 8)
    assert e[1, 1].item() == pytest.approx(math.cos(5 * w1), abs=1e-6)
    assert e[1, 9].item() == pytest.approx(math.sin(5 * w1), abs=1e-6)
    film = TimeFiLM(256, 32)
    z = torch.randn(3, 32, 4, 5)
    emb = torch.randn(3, 256)
    out = film(z, emb)
    assert out.shape == z.shape
    scale, shift = film.mlp(emb).chunk(2, dim=1)
    ref = z * (scale[:, :, None, None] + 1) + shift[:, :, None, None]
    assert torch.allclose(out, ref)
    with torch.no_grad():  # zero MLP -> identity
        film.mlp[1].weight.zero_()
        film.mlp[1].bias.zero_()
    assert torch.equal(film(z, emb), z)


def test_no_timestep_is_exactly_g_and_skips_g_prime():
    enc = _build()
    assert enc.level_channels == [8, 8, 8, 8]
    calls = []
    enc.g_prime.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 3, 64, 64)
    out = enc(x)
    ref = enc.backbone(x)
    assert all(torch.equal(a, b) for a, b in zip(out, ref))
    assert calls == []
    with enc.timestep(torch.tensor([3, 50])):
        enc(x)
    assert calls == [1]
    assert enc._t is None  # the scope is cleared


def test_full_mode_is_g_plus_film_of_g_prime_and_init_copies_g():
    enc = _build()
    for (n, p), (n2, p2) in zip(enc.backbone.named_parameters(),
                                enc.g_prime.named_parameters()):
        assert n == n2 and torch.equal(p, p2)
    with torch.no_grad():  # make g' differ from g to see both terms
        for p in enc.g_prime.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x = torch.randn(2, 3, 64, 64)
    t = torch.tensor([10, 80])
    with enc.timestep(t):
        out = enc(x)
    emb = enc.time_embed(t)
    g, gp = enc.backbone(x), enc.g_prime(x)
    for i in range(4):
        assert torch.allclose(out[i], g[i] + enc.film[i](gp[i], emb), atol=1e-6)
    with pytest.raises(ValueError, match='does not match the batch size'):
        with enc.timestep(torch.tensor([1, 2, 3])):
            enc(x)


def test_gradients_reach_g_prime_only_through_degraded_pass():
    enc = _build()
    x = torch.randn(2, 3, 64, 64)
    sum(f.sum() for f in enc(x)).backward()
    assert all(p.grad is None for p in enc.g_prime.parameters())
    assert all(p.grad is None for p in enc.film.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in enc.backbone.parameters())
    enc.zero_grad(set_to_none=True)
    with enc.timestep(torch.tensor([1, 60])):
        sum(f.pow(2).sum() for f in enc(x)).backward()
    assert all(p.grad is not None for p in enc.film.parameters())
    assert sum(p.grad.abs().sum() for p in enc.g_prime.parameters()) > 0


def test_checkpointed_encoders_give_same_gradients():
    x = torch.randn(2, 3, 64, 64)
    t = torch.tensor([7, 70])
    grads = {}
    for mode in MEMORY_SAVING:
        torch.manual_seed(0)
        enc = _build(memory_saving=mode)
        enc.train()
        assert (enc.checkpoint_g_prime, enc.checkpoint_g) == (
            MEMORY_SAVING[mode].checkpoint_g_prime, MEMORY_SAVING[mode].checkpoint_g)
        with enc.timestep(t):
            sum(f.pow(2).sum() for f in enc(x)).backward()
        grads[mode] = {n: p.grad.clone() for n, p in enc.named_parameters()}
    assert set(grads['none']) == set(grads['encoders'])
    for mode in ('g_prime', 'encoders'):  # g' (and g) recomputed in backward
        assert all(torch.allclose(grads['none'][n], g, atol=1e-5)
                   for n, g in grads[mode].items())
    with pytest.raises(ValueError, match="memory_saving must be one of"):
        _build(memory_saving='chunked')


def test_ablation_modes():
    x = torch.randn(1, 3, 64, 64)
    t = torch.tensor([30])
    g_time = _build('g_time')
    assert not hasattr(g_time, 'g_prime')
    with g_time.timestep(t):
        out = g_time(x)
    emb = g_time.time_embed(t)
    ref = [f(z, emb) for f, z in zip(g_time.film, g_time.backbone(x))]
    assert all(torch.allclose(a, b) for a, b in zip(out, ref))
    none = _build('none')
    assert sum(p.numel() for p in none.parameters()) == sum(
        p.numel() for p in none.backbone.parameters())
    with none.timestep(t):
        out = none(x)
    assert all(torch.equal(a, b) for a, b in zip(out, none.backbone(x)))
    assert isinstance(none.deploy_module(), type(none.backbone))
    with pytest.raises(ValueError, match='mode must be one of'):
        DiffusionEncoder(TINY_MIT, mode='half')


def test_degraded_levels_are_g_and_the_fused_features_of_forward():
    enc = _build()
    x = torch.randn(2, 3, 64, 64)
    t = torch.tensor([3, 70])
    g, fused = enc.degraded_levels(x, t)
    ref_g = enc.backbone(x)
    with enc.timestep(t):
        out = enc(x)
    for a, b, c, d in zip(g, ref_g, fused, out):
        assert torch.equal(a, b) and torch.equal(c, d)
    emb = enc.time_embed(t)
    zp = enc.g_prime(x)
    for level, (a, c) in enumerate(zip(g, fused)):
        torch.testing.assert_close(c, a + enc.film[level](zp[level], emb))


def test_zero_compensation_starts_at_g_and_learns():
    """compensation_init='zero': z_hat = 0 for every t at step 0 (fused = g(x_t)
    exactly), and the FiLM output layer still receives a gradient, so z_hat moves."""
    enc = _build(compensation_init='zero')
    x = torch.randn(2, 3, 64, 64)
    t = torch.tensor([0, 99])
    g, fused = enc.degraded_levels(x, t)
    for a, b in zip(g, fused):
        assert torch.equal(a, b)
    sum(f.pow(2).sum() for f in fused).backward()
    for film in enc.film:
        assert film.mlp[1].weight.grad.abs().sum() > 0
    # g' receives nothing while scale + 1 = 0; the default start is ~2 g instead
    assert all(p.grad is None or p.grad.abs().sum() == 0
               for p in enc.g_prime.parameters())
    default = _build()
    g, fused = default.degraded_levels(x, t)
    ratio = torch.stack([f.norm() / z.norm() for f, z in zip(fused, g)])
    assert ((ratio > 1.7) & (ratio < 2.3)).all(), ratio
    with pytest.raises(ValueError, match="compensation_init='zero' needs mode='full'"):
        _build(mode='g_time', compensation_init='zero')

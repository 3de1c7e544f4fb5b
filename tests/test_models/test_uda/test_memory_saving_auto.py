"""DiDA's memory_saving='auto': the modes it walks, and the exact replay of a step that
ran out of memory (mmseg_dida.models.uda.memory_fallback).

An out-of-memory error is simulated on the CPU by raising ``torch.OutOfMemoryError``
from DiDA's degraded pass while the plug-in is in a mode that "does not fit"; the pass
raises after the host's source and mixed passes have back-propagated, moved the
BatchNorm running statistics and drawn random numbers, and after DiDA has drawn t and
eps, so that a replay that kept any of it would differ from a run that used the final
mode from the start.
"""
import pytest
import torch
import torch.multiprocessing as mp

import mmseg_dida  # noqa: F401
from mmseg_dida.models.backbones import DiffusionEncoder
from mmseg_dida.models.uda import memory_fallback
from mmseg_dida.models.utils.memory_saving import (
    MEMORY_SAVING,
    check_memory_saving,
    initial_memory_saving,
    next_memory_saving,
)
from tests.helpers.memory_fallback import build, fail_in, rank_worker, train


def test_modes_auto_walks_fastest_first():
    assert initial_memory_saving('auto') == 'none'
    assert initial_memory_saving('g_prime') == 'g_prime'
    walk, mode = [], 'none'
    while mode is not None:
        walk.append(mode)
        mode = next_memory_saving(mode)
    assert walk == list(MEMORY_SAVING) == ['none', 'per_domain', 'g_prime', 'encoders']
    assert check_memory_saving('auto', 'DiDA') == 'auto'
    with pytest.raises(ValueError, match=r"DiDA: memory_saving must be one of .*'auto'"):
        check_memory_saving('fastest', 'DiDA')
    with pytest.raises(ValueError, match='DiffusionEncoder: memory_saving'):
        DiffusionEncoder(dict(type='MixVisionTransformer', embed_dims=8, num_stages=1,
                              num_layers=[1], num_heads=[1], patch_sizes=[7],
                              sr_ratios=[1], out_indices=(0, )),
                         memory_saving='auto')


def test_dida_auto_steps_down_and_sets_the_encoder():
    model = build(memory_saving='auto')
    plugin, enc = model.plugins[0], model.student.backbone
    assert plugin.active_memory_saving == 'none'
    assert (enc.checkpoint_g_prime, enc.checkpoint_g) == (False, False)
    seen, previous = [], 'none'
    while plugin.memory_fallback() is not None:
        nxt = plugin.memory_fallback()
        assert plugin.use_memory_fallback(model.student) == (
            f'DiDA memory_saving {previous!r} -> {nxt!r}')
        assert plugin.active_memory_saving == nxt
        seen.append(nxt)
        previous = nxt
        mode = MEMORY_SAVING[plugin.active_memory_saving]
        assert (enc.checkpoint_g_prime, enc.checkpoint_g) == (
            mode.checkpoint_g_prime, mode.checkpoint_g)
    assert seen == ['per_domain', 'g_prime', 'encoders']
    with pytest.raises(RuntimeError, match="no memory saving mode after 'encoders'"):
        plugin.use_memory_fallback(model.student)
    # A configured mode is kept: no fallback.
    assert build(memory_saving='none').plugins[0].memory_fallback() is None


def test_auto_stops_before_checkpointing_frozen_backbone_modules():
    plugin = build(memory_saving='auto',
                   degraded_frozen_modules=['backbone.layers.0']).plugins[0]
    assert plugin.memory_fallback() == 'per_domain'
    plugin.use_memory_fallback(build().student)
    assert plugin.memory_fallback() is None  # g_prime would checkpoint the scope


def test_replay_equals_the_final_mode_from_the_start(monkeypatch):
    """'none' and 'per_domain' "do not fit": the first step is replayed twice and
    then trains exactly as a run configured with 'g_prime' (weights, optimiser
    state, BatchNorm statistics, logs, random states), and later steps run once."""
    messages = []
    monkeypatch.setattr(memory_fallback, 'print_log',
                        lambda msg, **kw: messages.append(msg))
    auto = build(memory_saving='auto')
    calls = fail_in(auto, {'none', 'per_domain'})
    logs_auto, optim_auto = train(auto)
    rng_auto = torch.get_rng_state()
    fixed = build(memory_saving='g_prime')
    logs_fixed, optim_fixed = train(fixed)
    rng_fixed = torch.get_rng_state()

    # 'none' is one degraded pass; 'per_domain' fails in its first (source) pass.
    assert calls == [(0, 'none'), (0, 'per_domain'), (0, 'g_prime'), (0, 'g_prime'),
                     (1, 'g_prime'), (1, 'g_prime')]
    assert auto.plugins[0].active_memory_saving == 'g_prime'
    assert auto.student.backbone.checkpoint_g_prime
    for la, lf in zip(logs_auto, logs_fixed):
        assert la.keys() == lf.keys()
        for k in la:
            torch.testing.assert_close(la[k], lf[k], rtol=0, atol=0, msg=k)
    sa, sf = auto.state_dict(), fixed.state_dict()
    assert sa.keys() == sf.keys()
    bn = [k for k in sa if 'running_mean' in k]
    assert bn, 'the test model has BatchNorm statistics'
    for k in sa:
        torch.testing.assert_close(sa[k], sf[k], rtol=0, atol=0, msg=k)
    # The statistics moved (the check above could not pass by nothing happening).
    assert not torch.equal(sa[bn[0]], torch.zeros_like(sa[bn[0]]))
    for ga, gf in zip(optim_auto.optimizer.state.values(),
                      optim_fixed.optimizer.state.values()):
        torch.testing.assert_close(ga['exp_avg'], gf['exp_avg'], rtol=0, atol=0)
    assert torch.equal(rng_auto, rng_fixed)
    assert torch.equal(auto.plugins[0].degradation.rng_state(),
                       fixed.plugins[0].degradation.rng_state())
    assert messages[0].startswith('Iteration 0: out of memory; replaying the step with '
                                  "DiDA memory_saving 'none' -> 'per_domain'")
    assert "'per_domain' -> 'g_prime'" in messages[1]
    assert messages[2].startswith("Iteration 0: the step fits with DiDA memory_saving "
                                  "'per_domain' -> 'g_prime'")
    assert len(messages) == 3


def test_replay_keeps_nothing_of_the_failed_attempt():
    """Without the snapshot (random states, buffers) and the cleared gradients a
    replayed step differs from the direct one: the comparison above can fail."""
    auto = build(memory_saving='auto')
    fail_in(auto, {'none'})
    original = memory_fallback.StepSnapshot.restore
    memory_fallback.StepSnapshot.restore = lambda self, model: None
    try:
        logs_auto, _ = train(auto, steps=1)
    finally:
        memory_fallback.StepSnapshot.restore = original
    fixed = build(memory_saving='per_domain')
    logs_fixed, _ = train(fixed, steps=1)
    assert not all(torch.equal(logs_auto[0][k], logs_fixed[0][k]) for k in logs_auto[0])


def test_out_of_memory_in_every_mode_raises_after_the_last():
    auto = build(memory_saving='auto')
    calls = fail_in(auto, set(MEMORY_SAVING))
    with pytest.raises(torch.OutOfMemoryError, match='simulated'):
        train(auto, steps=1)
    assert [m for _, m in calls] == list(MEMORY_SAVING)


@pytest.mark.parametrize('memory_saving, error', [
    ('none', torch.OutOfMemoryError),  # a configured mode is never replayed
    ('auto', ValueError),              # only out-of-memory errors are replayed
])
def test_no_replay(memory_saving, error):
    model = build(memory_saving=memory_saving)
    calls = fail_in(model, {'none'}, error)
    with pytest.raises(error, match='simulated'):
        train(model, steps=1)
    assert calls == [(0, 'none')]
    assert model.plugins[0].active_memory_saving == 'none'


def test_processes_replay_together(tmp_path):
    """With two processes only rank 1 runs out of memory; both replay the step with
    'per_domain' (one setting for all), and their weights stay equal."""
    mp.spawn(rank_worker, args=(2, str(tmp_path / 'init'), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pth') for r in range(2))
    assert r0['mode'] == r1['mode'] == 'per_domain'
    assert r0['calls'] == [(0, 'none'), (0, 'per_domain'), (0, 'per_domain'),
                           (1, 'per_domain'), (1, 'per_domain')]
    assert r1['calls'] == r0['calls']
    for p0, p1 in zip(r0['params'], r1['params']):
        torch.testing.assert_close(p0, p1, rtol=0, atol=0)

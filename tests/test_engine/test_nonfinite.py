"""Mixed precision and non-finite losses in the DACS step (CPU: bfloat16 autocast with
torch's CPU GradScaler; fp16 autocast needs CUDA, the scaler logic is the same).

* a forced overflow (a loss that is finite but not after loss scaling) skips the
  step and halves the scale; weights, optimiser state and the EMA teacher stay
  finite, and the next step trains with the lower scale;
* without AMP, NonFiniteLossHook skips steps whose gradients are not finite and
  stops a run of non-finite losses after ``max_consecutive`` iterations.
"""
import logging
from types import SimpleNamespace

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.engine.hooks import NonFiniteLossError, NonFiniteLossHook
from mmseg_dida.models.uda import BaseUDAPlugin
from tests.helpers.amp import cpu_loss_scaled_wrapper
from tests.helpers.uda import build_dacs, make_batch, tiny_segmentor


@MODELS.register_module(force=True)
class ExtraLossPlugin(BaseUDAPlugin):
    """Adds ``value * mean(student logits)`` as a loss at the iterations listed."""

    def __init__(self, value: float, iterations=(0, )):
        super().__init__()
        self.value, self.iterations = value, tuple(iterations)

    def losses(self, ctx):
        if ctx.iteration not in self.iterations:
            return {}
        logits = ctx.student.encode_decode(ctx.src_inputs, [
            s.metainfo for s in ctx.src_data_samples])
        return {'loss_extra': logits.float().mean() * 0 + self.value * (
            1 + logits.float().mean().abs())}


def dacs(value, iterations=(0, ), bn=False):
    segmentor = tiny_segmentor()
    if bn:  # running statistics that every forward pass changes
        segmentor['decode_head']['norm_cfg'] = dict(type='BN', requires_grad=True)
    return build_dacs(
        segmentor, [dict(type='ExtraLossPlugin', value=value, iterations=iterations)],
        pseudo_weight_ignore_top=0, pseudo_weight_ignore_bottom=0,
        imnet_feature_dist_lambda=0.0)


def all_finite(module):
    return all(torch.isfinite(t).all() for t in module.state_dict().values()
               if t.is_floating_point())


def test_forced_overflow_skips_the_step_and_lowers_the_scale(cpu_only, monkeypatch):
    model = dacs(1e36)  # finite, but x 65536 overflows float32
    wrapper = cpu_loss_scaled_wrapper(torch.optim.AdamW(model.parameters(), lr=1e-2),
                                      monkeypatch)
    assert wrapper.cast_dtype == torch.bfloat16  # CPU: bf16 autocast
    before = {k: v.clone() for k, v in model.student.state_dict().items()}
    scale = wrapper.loss_scaler.get_scale()
    log = model.train_step(make_batch(seed=0), wrapper)
    assert torch.isfinite(log['loss_extra']) and log['loss_extra'] > 1e35
    assert wrapper.loss_scaler.get_scale() == scale / 2
    params = dict(model.student.named_parameters())
    assert all(torch.equal(before[n], params[n]) for n in params)  # step skipped
    assert not wrapper.optimizer.state  # AdamW never stepped
    model.train_step(make_batch(seed=1), wrapper)  # EMA update + a real step
    assert wrapper.loss_scaler.get_scale() == scale / 2
    assert any(not torch.equal(before[n], params[n]) for n in params)
    assert all_finite(model.student) and all_finite(model.teacher)
    assert all(torch.isfinite(v).all() for s in wrapper.optimizer.state.values()
               for v in s.values() if torch.is_tensor(v))


def _runner(model, wrapper):
    return SimpleNamespace(optim_wrapper=wrapper, iter=0,
                           logger=logging.getLogger('test_nonfinite'), model=model)


def test_nonfinite_losses_skip_steps_then_stop():
    model = dacs(float('nan'), iterations=range(100), bn=True)
    wrapper = OptimWrapper(optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2))
    runner = _runner(model, wrapper)
    hook = NonFiniteLossHook(max_consecutive=3)
    hook.before_train(runner)
    before = {k: v.clone() for k, v in model.student.state_dict().items()
              if v.is_floating_point()}
    assert any('running_var' in k for k in before)
    with pytest.raises(NonFiniteLossError) as err:
        for it in range(5):
            runner.iter = it
            hook.before_train_iter(runner, it)
            out = model.train_step(make_batch(seed=it), wrapper)
            hook.after_train_iter(runner, it, outputs=out)
    assert runner.iter == 2 and hook.skipped_steps == 3
    msg = str(err.value)
    assert msg.startswith('training stopped: the loss was not finite in 3 iterations '
                          'in a row (1-3; ') and 'loss_extra=nan' in msg
    assert '\n' not in msg and 'max_consecutive' in msg
    state = model.student.state_dict()  # weights and running statistics unchanged
    assert all(torch.equal(before[k], state[k]) for k in before)
    assert all_finite(model.student) and all_finite(model.teacher)


def test_a_finite_loss_resets_the_count():
    model = dacs(float('inf'), iterations=(0, 1, 3, 4))
    wrapper = OptimWrapper(optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2))
    runner = _runner(model, wrapper)
    hook = NonFiniteLossHook(max_consecutive=3)
    hook.before_train(runner)
    for it in range(5):  # bad, bad, good, bad, bad: never 3 in a row
        runner.iter = it
        hook.before_train_iter(runner, it)
        out = model.train_step(make_batch(seed=it), wrapper)
        hook.after_train_iter(runner, it, outputs=out)
    assert hook.consecutive == 2 and hook.skipped_steps == 4
    assert all_finite(model.student) and all_finite(model.teacher)


def test_max_consecutive_is_validated():
    with pytest.raises(ValueError, match='max_consecutive must be an int >= 1'):
        NonFiniteLossHook(max_consecutive=0)


def _run_hook(model, wrapper, hook, iterations, counter=None):
    runner = _runner(model, wrapper)
    hook.before_train(runner)
    for it in range(iterations):
        runner.iter = it
        batch = make_batch(seed=it)
        hook.before_train_iter(runner, it)
        if counter is None:
            out = model.train_step(batch, wrapper)
            hook.after_train_iter(runner, it, outputs=out)
        else:
            with counter:
                out = model.train_step(batch, wrapper)
                hook.after_train_iter(runner, it, outputs=out)
    return runner


@pytest.mark.parametrize('fused', [True, False])
def test_guard_skips_nonfinite_steps_with_one_device_read_per_step(fused):
    """A fused AdamW skips on the device flag (found_inf), so the hook reads the
    device once per step (its flags); other optimisers need the guard's read too.
    Either way the skipped steps leave weights, moments, step counts and running
    statistics as they were, and the finite step after them trains."""
    from tests.helpers.host_sync import HostSyncCounter
    model = dacs(float('nan'), iterations=(1, 2), bn=True)
    wrapper = OptimWrapper(optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2,
                                                       fused=fused))
    hook = NonFiniteLossHook(max_consecutive=3)
    _run_hook(model, wrapper, hook, 1)  # a finite step: AdamW's state exists
    state = {k: v.clone() for k, v in model.student.state_dict().items()
             if v.is_floating_point()}
    moments = {id(p): {k: v.clone() for k, v in s.items()}
               for p, s in wrapper.optimizer.state.items()}
    counter = HostSyncCounter()
    runner = _runner(model, wrapper)
    for it in (1, 2):  # two non-finite steps
        runner.iter = it
        hook.before_train_iter(runner, it)
        with counter:
            out = model.train_step(make_batch(seed=it), wrapper)
            hook.after_train_iter(runner, it, outputs=out)
    assert hook.skipped_steps == 2 and hook.consecutive == 2
    after = model.student.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    for p, s in wrapper.optimizer.state.items():
        assert all(torch.equal(moments[id(p)][k], v) for k, v in s.items())
    reads = [site for _, _, site in counter.syncs]
    assert sum('after_train_iter' in s for s in reads) == 2  # one per step
    assert sum('guarded_step' in s for s in reads) == (0 if fused else 2)
    assert len(reads) == (2 if fused else 4)
    _run_hook(model, wrapper, hook, 1)  # finite again: trains
    assert hook.consecutive == 0
    assert any(not torch.equal(state[k], v) for k, v in model.student.state_dict().items()
               if k in state)

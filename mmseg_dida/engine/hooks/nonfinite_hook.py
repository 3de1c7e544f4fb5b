"""NonFiniteLossHook: a step with non-finite gradients never reaches the weights, and
a run whose loss stays non-finite stops with one clear error.

* Mixed precision (``AmpOptimWrapper``): the loss scaler already skips a step whose
  gradients overflowed and lowers the scale; the hook logs it (iteration, scale
  before and after).
* Full precision: the optimiser wrapper's ``step`` is guarded -- when any gradient
  is NaN/inf the step is skipped (gradients cleared), so that the weights, the
  optimiser state and hence the EMA teacher stay finite.
* After a skipped step (either way) the model's floating-point buffers (the
  normalisation layers' running statistics of student and teacher) are restored to
  their values before the iteration: the forward passes that produced the
  non-finite values leave no trace.
* ``max_consecutive`` iterations in a row with a non-finite loss (on any process)
  raise :class:`NonFiniteLossError`, which ``tools/train.py`` reports as one line.
  Checkpoints written before are untouched.
* Host waits (``tests/helpers/host_sync.py``): the hook reads the device once per
  iteration, at its end (the step's flags stacked into one tensor; the buffers of a
  skipped step are restored on the device before). In full precision with a fused
  Adam/AdamW (the default on CUDA) the guard hands the optimiser a device flag
  (``found_inf``, as GradScaler does), whose kernel skips the update, so the guard
  reads nothing; with other optimisers it reads the flag before the update.

The schedules declare it as ``default_hooks.nonfinite_loss``
(``configs/_base_/schedules/default_hooks.py``; ``None`` switches it off)::

    --cfg-options default_hooks.nonfinite_loss.max_consecutive=20
"""
import functools
import math
from typing import Optional

import torch
from mmengine.dist import all_reduce, get_dist_info
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from ...models.losses.loss_keys import is_loss_key

__all__ = ['NonFiniteLossHook', 'NonFiniteLossError']


class NonFiniteLossError(RuntimeError):
    """The loss was not finite for too many iterations in a row (one line)."""


def _grads_finite(optimizer) -> torch.Tensor:
    """Whether every gradient is finite, as a 0-d bool tensor (not read)."""
    grads = [p.grad for group in optimizer.param_groups for p in group['params']
             if p.grad is not None]
    if not grads:
        return torch.ones((), dtype=torch.bool)
    return torch.stack([torch.isfinite(g).all() for g in grads]).all()


def _skips_on_found_inf(optimizer) -> bool:
    """Whether ``optimizer`` skips its update on a device flag (``found_inf``, as
    under GradScaler) instead of a host decision: torch's fused Adam/AdamW, whose
    kernel leaves weights, moments and step counts unchanged when the flag is 1."""
    return (isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW))
            and all(g.get('fused') for g in optimizer.param_groups))


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Skip steps with non-finite gradients; stop after a run of non-finite losses.

    Args:
        max_consecutive: Iterations in a row with a non-finite loss after which
            training stops with :class:`NonFiniteLossError`. Default 10.
    """

    training_only = True  # dropped from test runs and deployed configs

    priority = 'ABOVE_NORMAL'

    def __init__(self, max_consecutive: int = 10):
        if not isinstance(max_consecutive, int) or isinstance(max_consecutive, bool) \
                or max_consecutive < 1:
            raise ValueError('NonFiniteLossHook: max_consecutive must be an int >= 1, '
                             f'got {max_consecutive!r}')
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.first_bad: Optional[int] = None
        self.skipped_steps = 0
        self._scale: Optional[torch.Tensor] = None
        self._guard_skipped: Optional[torch.Tensor] = None
        self._buffers = []

    @staticmethod
    def _scaler(runner):
        return getattr(runner.optim_wrapper, 'loss_scaler', None)

    def before_train(self, runner) -> None:
        wrapper = runner.optim_wrapper
        if self._scaler(runner) is not None or getattr(wrapper, '_nonfinite_guard',
                                                       False):
            return
        step = wrapper.step

        # functools.wraps keeps the step counter's mark of the LR schedulers (built
        # before this hook runs), which would otherwise warn that the step was
        # overridden after them
        @functools.wraps(step)
        def guarded_step(**kwargs):
            optimizer = wrapper.optimizer
            finite = _grads_finite(optimizer)
            if _skips_on_found_inf(optimizer):  # no host read: the kernel skips
                device = next(p.device for g in optimizer.param_groups
                              for p in g['params'])
                self._guard_skipped = ~finite.to(device)
                optimizer.found_inf = self._guard_skipped.float()
                try:
                    return step(**kwargs)
                finally:
                    del optimizer.found_inf
            if bool(finite):
                return step(**kwargs)
            self._guard_skipped = torch.ones((), dtype=torch.bool)
            optimizer.zero_grad()
            return None

        wrapper.step = guarded_step
        wrapper._nonfinite_guard = True

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._scale = self._scale_tensor(runner)
        self._scale = None if self._scale is None else self._scale.clone()
        self._guard_skipped = None
        model = getattr(runner.model, 'module', runner.model)
        self._buffers = [(b, b.detach().clone()) for b in model.buffers()
                         if b.is_floating_point()]

    def _scale_tensor(self, runner) -> Optional[torch.Tensor]:
        """The loss scaler's scale as a tensor (GradScaler keeps it on the device;
        ``get_scale()`` would read it), None without a scaler."""
        scaler = self._scaler(runner)
        if scaler is None:
            return None
        scale = getattr(scaler, '_scale', None)
        if not isinstance(scale, torch.Tensor):  # before the first step, or another API
            scale = torch.tensor(float(scaler.get_scale()))
        return scale

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """One read of the device per step: the step's flags (loss finite, step
        skipped by the loss scaler or the guard) stacked into one tensor. The
        running statistics of a skipped step are restored on the device first."""
        skipped = torch.zeros((), dtype=torch.bool)
        scale = self._scale_tensor(runner)
        if scale is not None and self._scale is not None:
            skipped = skipped.to(scale.device) | (scale < self._scale.to(scale.device))
        if self._guard_skipped is not None:
            skipped = skipped.to(self._guard_skipped.device) | self._guard_skipped
        with torch.no_grad():  # the running statistics as before a skipped iteration
            for buffer, saved in self._buffers:
                buffer.copy_(torch.where(skipped.to(buffer.device), saved, buffer))
        self._buffers = []
        losses = {k: v for k, v in (outputs or {}).items()
                  if is_loss_key(k) and isinstance(v, (torch.Tensor, float, int))
                  and (not isinstance(v, torch.Tensor) or v.numel() == 1)}
        finite = torch.ones((), dtype=torch.bool, device=skipped.device)
        for v in losses.values():
            ok = (torch.isfinite(v).reshape(()) if isinstance(v, torch.Tensor)
                  else torch.tensor(math.isfinite(v)))
            finite = finite & ok.to(finite.device)
        was_skipped, bad = (bool(v) for v in torch.stack([skipped, ~finite]).tolist())
        if was_skipped:
            self.skipped_steps += 1
            if self._scale is not None:
                runner.logger.warning(
                    f'iteration {runner.iter + 1}: non-finite gradients under mixed '
                    f'precision, step skipped, loss scale {float(self._scale):g} -> '
                    f'{float(scale):g}')
            else:
                runner.logger.warning(f'iteration {runner.iter + 1}: non-finite '
                                      'gradients, optimiser step skipped')
        if get_dist_info()[1] > 1:  # the same decision on every process
            flag = torch.tensor([float(bad)])
            all_reduce(flag, op='max')
            bad = bool(flag.item())
        if not bad:
            self.consecutive, self.first_bad = 0, None
            return
        self.consecutive += 1
        if self.first_bad is None:
            self.first_bad = runner.iter + 1
        if self.consecutive >= self.max_consecutive:
            values = {k: float(v) for k, v in losses.items()}  # read once, to stop
            shown = ', '.join(f'{k}={v:g}' for k, v in values.items()
                              if not math.isfinite(v)) or 'on another process'
            raise NonFiniteLossError(
                f'training stopped: the loss was not finite in {self.consecutive} '
                f'iterations in a row ({self.first_bad}-{runner.iter + 1}; {shown}); '
                'those steps did not change the weights. Lower the learning rate or '
                'check the data; the limit is default_hooks.nonfinite_loss.'
                'max_consecutive')

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

``tools/train.py`` adds it as ``default_hooks.nonfinite_loss`` unless the config sets
that key (``None`` switches it off)::

    --cfg-options default_hooks.nonfinite_loss.max_consecutive=20
"""
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


def _grads_finite(optimizer) -> bool:
    grads = [p.grad for group in optimizer.param_groups for p in group['params']
             if p.grad is not None]
    if not grads:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Skip steps with non-finite gradients; stop after a run of non-finite losses.

    Args:
        max_consecutive: Iterations in a row with a non-finite loss after which
            training stops with :class:`NonFiniteLossError`. Default 10.
    """

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
        self._scale: Optional[float] = None
        self._skipped = False
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

        def guarded_step(**kwargs):
            if _grads_finite(wrapper.optimizer):
                return step(**kwargs)
            self.skipped_steps += 1
            self._skipped = True
            wrapper.optimizer.zero_grad()
            runner.logger.warning(f'iteration {runner.iter + 1}: non-finite gradients, '
                                  'optimiser step skipped')
            return None

        wrapper.step = guarded_step
        wrapper._nonfinite_guard = True

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        scaler = self._scaler(runner)
        self._scale = None if scaler is None else float(scaler.get_scale())
        self._skipped = False
        model = getattr(runner.model, 'module', runner.model)
        self._buffers = [(b, b.detach().clone()) for b in model.buffers()
                         if b.is_floating_point()]

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        scaler = self._scaler(runner)
        if scaler is not None and self._scale is not None:
            scale = float(scaler.get_scale())
            if scale < self._scale:
                self._skipped = True
                runner.logger.warning(
                    f'iteration {runner.iter + 1}: non-finite gradients under mixed '
                    f'precision, step skipped, loss scale {self._scale:g} -> {scale:g}')
        if self._skipped:  # the running statistics as before the iteration
            with torch.no_grad():
                for buffer, saved in self._buffers:
                    buffer.copy_(saved)
        self._buffers = []
        values = {k: float(v) for k, v in (outputs or {}).items()
                  if is_loss_key(k) and isinstance(v, (torch.Tensor, float, int))
                  and (not isinstance(v, torch.Tensor) or v.numel() == 1)}
        bad = not all(math.isfinite(v) for v in values.values())
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
            shown = ', '.join(f'{k}={v:g}' for k, v in values.items()
                              if not math.isfinite(v)) or 'on another process'
            raise NonFiniteLossError(
                f'training stopped: the loss was not finite in {self.consecutive} '
                f'iterations in a row ({self.first_bad}-{runner.iter + 1}; {shown}); '
                'those steps did not change the weights. Lower the learning rate or '
                'check the data; the limit is default_hooks.nonfinite_loss.'
                'max_consecutive')

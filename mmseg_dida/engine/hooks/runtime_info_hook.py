"""DeferredRuntimeInfoHook: mmengine's ``RuntimeInfoHook`` without a host wait per step.

mmengine's hook turns every entry of a step's log (about 20 for a UDA step: losses,
accuracies, weights) into a Python number at the end of every iteration (``.item()``).
On a GPU each of these makes the host wait until the device has finished the step,
so the next step's kernels are queued only after the device has gone idle.

This hook keeps each step's tensors on the device (stacked into one tensor per step)
and turns them into numbers in one read when something needs them: the iterations the
logger writes (its interval, the end of an epoch, the last iteration), before a
checkpoint is written (its message-hub state holds these histories), before
validation and at the end of training. The message hub then receives exactly the
values, in the order, that mmengine's hook would have given it, so the logs, the
smoothed values and the saved histories are unchanged. At most ``max_pending`` steps
wait (the default 1000 bounds the memory: ~20 numbers per step).

The schedules declare it as ``default_hooks.runtime_info``
(``configs/_base_/schedules/default_hooks.py``).
"""
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.hooks import LoggerHook, RuntimeInfoHook
from mmengine.utils import apply_to
from mmseg.registry import HOOKS

__all__ = ['DeferredRuntimeInfoHook']


@HOOKS.register_module()
class DeferredRuntimeInfoHook(RuntimeInfoHook):
    """:class:`mmengine.hooks.RuntimeInfoHook` reading the step's log values from the
    device once per logging interval instead of once per value per step.

    Args:
        max_pending: Steps kept on the device at most before they are read anyway.
    """

    training_only = True  # a test run or a deployed config gets mmengine's own

    def __init__(self, max_pending: int = 1000):
        if not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError('DeferredRuntimeInfoHook: max_pending must be an int >= 1, '
                             f'got {max_pending!r}')
        self.max_pending = max_pending
        # per step: (keys, stacked tensor values, their dtypes, other values)
        self._pending: List[Tuple[List[str], Optional[torch.Tensor], List[torch.dtype],
                                  Dict[str, object]]] = []
        self._logger: Optional[LoggerHook] = None

    def before_train(self, runner) -> None:
        super().before_train(runner)
        loggers = [h for h in runner.hooks if isinstance(h, LoggerHook)]
        self._logger = loggers[0] if loggers else None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if outputs is not None:
            self._keep(outputs)
        if self._logger_writes(runner, batch_idx) or len(self._pending) >= self.max_pending:
            self.flush(runner)

    def _keep(self, outputs: dict) -> None:
        keys, tensors, dtypes, other = [], [], [], {}
        for key, value in outputs.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                keys.append(key)
                # float64 holds float32 and int values exactly: .tolist() then gives
                # the numbers .item() would have
                tensors.append(value.detach().reshape(()).to(torch.float64))
                dtypes.append(value.dtype)
            else:  # numbers (and anything else mmengine's hook accepts) as they are
                other[key] = value
        stacked = torch.stack(tensors) if tensors else None
        self._pending.append((keys, stacked, dtypes, other))

    def _logger_writes(self, runner, batch_idx: int) -> bool:
        """Whether the logger hook reads the train scalars after this iteration (its
        own conditions), or this is the last iteration."""
        if self.is_last_train_iter(runner):
            return True
        logger = self._logger
        if logger is None:
            return False
        if self.every_n_inner_iters(batch_idx, logger.interval):
            return True
        return (self.end_of_epoch(runner.train_dataloader, batch_idx)
                and (not logger.ignore_last
                     or len(runner.train_dataloader) <= logger.interval))

    def flush(self, runner) -> None:
        """Put every waiting step's values into the message hub (one device read)."""
        if not self._pending:
            return
        stacks = [s for _, s, _, _ in self._pending if s is not None]
        numbers = torch.cat(stacks).tolist() if stacks else []
        i = 0
        hub = runner.message_hub
        for keys, _, dtypes, other in self._pending:
            for key, dtype in zip(keys, dtypes):
                value = numbers[i]
                i += 1
                if not dtype.is_floating_point and not dtype.is_complex:
                    value = int(value)
                hub.update_scalar(f'train/{key}', value)
            for key, value in other.items():
                hub.update_scalar(f'train/{key}', value)
        self._pending = []

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._pending:
            self.flush(runner)
            checkpoint['message_hub'] = apply_to(  # as Runner.save_checkpoint does
                runner.message_hub.state_dict(), lambda x: hasattr(x, 'cpu'),
                lambda x: x.cpu())

    def before_val(self, runner) -> None:
        self.flush(runner)
        super().before_val(runner)

    def after_train(self, runner) -> None:
        self.flush(runner)
        super().after_train(runner)

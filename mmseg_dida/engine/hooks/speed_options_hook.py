"""SpeedOptionsHook: the config key ``speed`` applied to the model before the first
iteration, after its weights are initialised or resumed
(:mod:`mmseg_dida.engine.speed_options` says what each option does). The schedules in
``configs/_base_/schedules/`` declare it as the ``speed_options`` default hook."""
from typing import List, Optional, Union

import torch
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from ..speed_options import (
    check_speed_options,
    compile_encoders,
    compile_kwargs,
    restore_built_flags,
    set_memory_format,
)

__all__ = ['SpeedOptionsHook']


def _optimizers(optim_wrapper) -> List[torch.optim.Optimizer]:
    if optim_wrapper is None:
        return []
    if hasattr(optim_wrapper, 'optimizer'):
        return [optim_wrapper.optimizer]
    return [w.optimizer for w in optim_wrapper.values()]  # OptimWrapperDict


@HOOKS.register_module()
class SpeedOptionsHook(Hook):
    """Applies the ``speed`` options to the model before the first iteration, after
    its weights are initialised or resumed (see the module docstring).

    Args:
        channels_last: NHWC memory format for the model's 4-D tensors and its
            backbones' input images (:func:`set_memory_format`); None (default): the
            run's config key ``speed.channels_last``.
        compile: False, True or a dict of ``torch.compile`` arguments for the
            student's encoders (:func:`compile_encoders`); None (default): the
            config key ``speed.compile``.
    """

    priority = 'VERY_HIGH'
    training_only = True  # dropped from the deployed model's config

    def __init__(self, channels_last: Optional[bool] = None,
                 compile: Union[None, bool, dict] = None):
        self._given = {k: v for k, v in (('channels_last', channels_last),
                                         ('compile', compile)) if v is not None}
        self._set(check_speed_options(dict(self._given), 'SpeedOptionsHook'))
        self.applied: List[str] = []

    def _set(self, opts: dict) -> None:
        self.channels_last = opts['channels_last']
        self.compile_kwargs = compile_kwargs(opts['compile'])

    def before_train(self, runner) -> None:
        speed = dict(getattr(runner, 'cfg', None) and runner.cfg.get('speed', None) or {})
        speed.pop('fused_optimizer', None)  # the optimiser's, built already
        self._set(check_speed_options({**speed, **self._given}, 'SpeedOptionsHook'))
        model = getattr(runner.model, 'module', runner.model)
        optimizers = _optimizers(getattr(runner, 'optim_wrapper', None))
        done = []
        for optimizer in optimizers:
            if restore_built_flags(optimizer):
                done.append('optimizer fused/foreach as built (not as resumed)')
        for optimizer in optimizers:
            fused = {bool(g.get('fused')) for g in optimizer.param_groups}
            done.append(f'{type(optimizer).__name__} fused={fused == {True}}')
        if self.channels_last:
            set_memory_format(model, True, optimizers)
            done.append('channels_last')
        if self.compile_kwargs is not None:
            names = compile_encoders(model, **self.compile_kwargs)
            done.append(f"torch.compile({self.compile_kwargs or ''}) of "
                        f"{', '.join(names)}")
        self.applied = done
        runner.logger.info('speed options: ' + '; '.join(done))

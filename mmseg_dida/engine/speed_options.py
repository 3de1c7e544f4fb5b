"""Speed options of a training run, in one place: fused AdamW, channels_last, and
``torch.compile`` of the encoders. None of them changes the maths of a step.

A config sets them with one top-level key (every entry optional; the defaults)::

    speed = dict(
        fused_optimizer='auto',  # 'auto' | True | False
        channels_last=False,
        compile=False,           # False | True | dict(**torch.compile arguments)
    )
    env_cfg = dict(cudnn_benchmark=False)  # mmengine's own switch, not repeated here

and ``tools/train.py`` has a flag for each (``--fused-optimizer {auto,on,off}``,
``--channels-last``, ``--compile [BACKEND]``, ``--cudnn-benchmark``), which write these
keys. :func:`apply_speed_options` turns the key into the registered parts below
(``tools/train.py`` calls it; a wrong key or value is one :class:`SpeedOptionError`
line naming the key):

* ``fused_optimizer``: torch's fused Adam/AdamW kernel (one kernel for the whole update
  instead of torch's default ``foreach`` kernels on CUDA; on the CPU torch's default is
  a per-tensor loop). ``'auto'`` (default): fused where every parameter is on CUDA and
  the config's optimiser sets neither ``fused`` nor ``foreach`` itself -- decided by
  :class:`SpeedOptimWrapperConstructor` from the parameters the runner hands it; CPU
  training is unchanged (torch 2.14 has a fused CPU Adam too: ``True`` uses it, see
  ``docs/RESULTS.md``, "Speed options (CPU)", for its time and numerics).
  ``True``: ``optimizer.fused=True`` on any device; ``False``: torch's default. With
  fp16 AMP (``AmpOptimWrapper``, dynamic loss scaling) a fused optimiser also removes
  the loss scaler's host synchronisation: torch's ``GradScaler.step`` hands an
  optimiser with ``_step_supports_amp_scaling`` (set by ``fused=True``) the scale and
  the ``found_inf`` flag as tensors, and the fused kernel unscales and skips on the
  device, where for other optimisers it calls ``found_inf.item()`` before deciding to
  step (``torch/amp/grad_scaler.py``, ``GradScaler.step`` / ``_maybe_opt_step``).
* ``channels_last``: the 4-D weights of the whole UDA model (student, EMA teacher,
  ImageNet model, plug-ins: MiT's patch-embedding and Mix-FFN convolutions, the
  DAFormer head's convolutions) and the images entering each segmentor's backbone in
  NHWC memory format (:func:`set_memory_format`); the optimiser's moments follow
  their parameters' layout. Numerically the same up to the order of float sums.
* ``compile``: ``torch.compile`` of the student's encoder g and, with DiDA, of g'
  (:func:`encoder_modules`), in place (``nn.Module.compile``): the modules, their names
  and state_dict keys stay, so checkpoints, resume, the EMA teacher (which pairs
  student and teacher tensors by name), deployment and export are unchanged (a deep
  copy, as deployment takes, is the plain module). Compiled kernels may sum in another
  order and draw dropout/DropPath noise from another stream: a run is not bitwise the
  eager one.

:class:`~mmseg_dida.engine.hooks.SpeedOptionsHook` (the ``speed_options`` default hook
the schedules declare) applies ``channels_last`` and ``compile`` before the first
iteration (after the weights are initialised or resumed) and, after a resume, gives the
optimiser back the ``fused``/``foreach`` it was built with (torch's ``load_state_dict``
takes them from the checkpoint's param groups, so a run resumed on another device or
setting would silently use the saved run's kernel).

Defaults: everything off except the fused optimiser on CUDA, until a GPU measurement
says otherwise (``tools/benchmarks/gpu_check.sh``; step_times and compile_times rows).
"""
import difflib
import inspect
from typing import Dict, Iterable, List, Optional, Union

import torch
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIMIZERS
from torch import Tensor, nn

from ..models.backbones.diffusion_encoder import DiffusionEncoder

__all__ = ['SPEED_DEFAULTS', 'SpeedOptionError', 'SpeedOptimWrapperConstructor',
           'apply_speed_options', 'check_speed_options', 'compile_kwargs',
           'choose_fused', 'compile_encoders', 'encoder_modules', 'set_memory_format',
           'restore_built_flags']

SPEED_DEFAULTS = dict(fused_optimizer='auto', channels_last=False, compile=False)
FUSED_CHOICES = ('auto', True, False)
#: the optimisers whose ``fused`` the options set (torch's fused Adam kernel)
FUSED_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)
#: the devices ``fused_optimizer='auto'`` chooses the fused kernel on
AUTO_FUSED_DEVICES = ('cuda', )


class SpeedOptionError(ValueError):
    """A wrong key or value of the ``speed`` config (one line naming it)."""


# ------------------------------------------------------------------ the config
def _compile_arguments() -> List[str]:
    return [n for n in inspect.signature(torch.compile).parameters if n != 'model']


def check_speed_options(speed: Optional[dict], where: str = 'speed') -> dict:
    """The options of the config key ``speed`` (None: all defaults), completed with
    :data:`SPEED_DEFAULTS`; raises :class:`SpeedOptionError` naming the key at fault."""
    if speed is None:
        speed = {}
    if not isinstance(speed, dict):
        raise SpeedOptionError(f'config key {where} must be a dict of '
                               f'{", ".join(SPEED_DEFAULTS)}, got {speed!r}')
    for key in speed:
        if key not in SPEED_DEFAULTS:
            close = difflib.get_close_matches(str(key), list(SPEED_DEFAULTS), n=1)
            hint = f' (did you mean {close[0]!r}?)' if close else ''
            raise SpeedOptionError(
                f'config key {where}.{key}: unknown speed option{hint}; the options '
                f'are {", ".join(SPEED_DEFAULTS)} (cudnn benchmark: '
                'env_cfg.cudnn_benchmark)')
    out = dict(SPEED_DEFAULTS, **speed)
    if out['fused_optimizer'] not in FUSED_CHOICES or \
            not isinstance(out['fused_optimizer'], (bool, str)):
        raise SpeedOptionError(f"config key {where}.fused_optimizer must be 'auto', "
                               f"True or False, got {out['fused_optimizer']!r}")
    if not isinstance(out['channels_last'], bool):
        raise SpeedOptionError(f'config key {where}.channels_last must be True or '
                               f"False, got {out['channels_last']!r}")
    comp = out['compile']
    if isinstance(comp, dict):
        allowed = _compile_arguments()
        for key in comp:
            if key not in allowed:
                raise SpeedOptionError(
                    f'config key {where}.compile.{key}: not an argument of '
                    f'torch.compile ({", ".join(allowed)})')
    elif not isinstance(comp, bool):
        raise SpeedOptionError(f'config key {where}.compile must be True, False or a '
                               f'dict of torch.compile arguments, got {comp!r}')
    return out


def compile_kwargs(compile_option: Union[bool, dict]) -> Optional[dict]:
    """torch.compile's arguments for the ``compile`` option (None: off)."""
    if compile_option is False:
        return None
    return {} if compile_option is True else dict(compile_option)


def apply_speed_options(cfg) -> dict:
    """Put the config's ``speed`` options into the optimiser the runner builds
    (``fused_optimizer``: ``optim_wrapper.constructor`` becomes
    :class:`SpeedOptimWrapperConstructor` for ``'auto'``; ``optimizer.fused=True`` for
    True); ``cfg.speed`` becomes the complete options, which the config's
    ``speed_options`` default hook (:class:`~mmseg_dida.engine.hooks.SpeedOptionsHook`)
    applies to the model. Returns them. Raises :class:`SpeedOptionError`."""
    speed = check_speed_options(cfg.get('speed', None))
    cfg.speed = speed
    hooks = list(cfg.get('custom_hooks', None) or [])
    for i, hook in enumerate(hooks):
        if isinstance(hook, dict) and getattr(hook.get('type'), '__name__',
                                              hook.get('type')) == 'SpeedOptionsHook':
            raise SpeedOptionError(
                f'custom_hooks[{i}] is a SpeedOptionsHook (the default hook '
                'speed_options is one already): set the config key speed '
                '(or tools/train.py --channels-last / --compile) instead')
    wrapper = cfg.get('optim_wrapper', None)
    fused = speed['fused_optimizer']
    if isinstance(wrapper, dict) and isinstance(wrapper.get('optimizer'), dict) \
            and fused is not False:
        opt = wrapper['optimizer']
        own = [k for k in ('fused', 'foreach') if opt.get(k) is not None]
        cls = _optimizer_class(opt.get('type'))
        if fused is True:
            if cls is None or not issubclass(cls, FUSED_OPTIMIZERS):
                raise SpeedOptionError(
                    'config key speed.fused_optimizer=True: optim_wrapper.optimizer.'
                    f"type is {opt.get('type')!r}; the fused kernel is wired for Adam "
                    'and AdamW')
            if opt.get('foreach'):
                raise SpeedOptionError(
                    'config key speed.fused_optimizer=True contradicts '
                    'optim_wrapper.optimizer.foreach=True')
            opt['fused'] = True
        elif not own:  # 'auto', decided on the parameters' device
            constructor = wrapper.get('constructor', 'DefaultOptimWrapperConstructor')
            if constructor in ('DefaultOptimWrapperConstructor',
                               'SpeedOptimWrapperConstructor'):
                wrapper['constructor'] = 'SpeedOptimWrapperConstructor'
            else:
                print_log(f"speed.fused_optimizer='auto': optim_wrapper.constructor is "
                          f'{constructor!r}, whose optimiser is left as configured',
                          logger='current')
    default_hooks = cfg.get('default_hooks', None) or {}
    if (speed['channels_last'] or speed['compile']) and not default_hooks.get(
            'speed_options'):
        raise SpeedOptionError(
            'config key speed: channels_last and compile are applied by the '
            'speed_options default hook (SpeedOptionsHook), which this config does not '
            "declare; add default_hooks.speed_options=dict(type='SpeedOptionsHook') as "
            'the schedules in configs/_base_/schedules/ do')
    return speed


def _optimizer_class(type_):
    if not isinstance(type_, str):
        return type_ if inspect.isclass(type_) else None
    with OPTIMIZERS.switch_scope_and_registry(None) as registry:
        try:
            return registry.get(type_)
        except Exception:  # an unknown scope prefix: not ours to judge
            return None


# ------------------------------------------------------------------ fused AdamW
def choose_fused(optimizer_cfg: dict, devices: Iterable[str],
                 setting: Union[str, bool] = 'auto') -> Optional[bool]:
    """The ``fused`` argument to give the optimiser of ``optimizer_cfg`` whose
    parameters are on ``devices`` (device types), or None to leave the config as it
    is: True for ``setting`` 'auto' when the optimiser is Adam/AdamW, the config sets
    neither ``fused`` nor ``foreach`` and every device is in
    :data:`AUTO_FUSED_DEVICES`; ``setting`` True: True for Adam/AdamW on any device."""
    if setting is False:
        return None
    cls = _optimizer_class(optimizer_cfg.get('type'))
    if cls is None or not issubclass(cls, FUSED_OPTIMIZERS):
        return None
    if any(optimizer_cfg.get(k) is not None for k in ('fused', 'foreach')):
        return None
    devices = set(devices)
    if setting is True:
        return True
    return True if devices and devices <= set(AUTO_FUSED_DEVICES) else None


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class SpeedOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor, giving Adam/AdamW ``fused=True`` when every
    parameter of the model is on CUDA and the optimiser config sets neither ``fused``
    nor ``foreach`` (``speed.fused_optimizer='auto'``, :func:`choose_fused`).
    Arguments are ``DefaultOptimWrapperConstructor``'s."""

    def add_params(self, params: list, module: nn.Module, prefix: str = '',
                   is_dcn_module=None) -> None:
        """mmengine's, except for a module whose parameters are all frozen (the EMA
        teacher, the feature distance's reference model): mmengine leaves each of
        them out of the optimiser with a warning per tensor (a hundred lines for a
        DACS model); here they are left out without one."""
        tensors = list(module.parameters())
        if tensors and not any(p.requires_grad for p in tensors):
            return
        super().add_params(params, module, prefix=prefix, is_dcn_module=is_dcn_module)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        inner = getattr(model, 'module', model)
        devices = {p.device.type for p in inner.parameters() if p.requires_grad}
        fused = choose_fused(self.optimizer_cfg, devices, 'auto')
        if fused is None:
            return super().__call__(model)
        saved = self.optimizer_cfg
        self.optimizer_cfg = dict(saved, fused=fused)
        try:
            return super().__call__(model)
        finally:
            self.optimizer_cfg = saved


def restore_built_flags(optimizer: torch.optim.Optimizer) -> bool:
    """Give every param group the ``fused``/``foreach`` the optimiser was built with
    (its ``defaults``) and put AdamW's ``step`` counters where that kernel keeps them
    (fused or capturable: a float32 tensor on the parameter's device; else the CPU).
    torch's ``load_state_dict`` takes these flags from the saved param groups, so
    after a resume the checkpoint's kernel would run. Returns whether anything
    changed."""
    changed = False
    for group in optimizer.param_groups:
        for key in ('fused', 'foreach'):
            if key in optimizer.defaults and group.get(key) != optimizer.defaults[key]:
                group[key] = optimizer.defaults[key]
                changed = True
        on_device = bool(group.get('fused')) or bool(group.get('capturable'))
        for p in group['params']:
            state = optimizer.state.get(p)
            step = state.get('step') if state else None
            if not isinstance(step, Tensor):
                continue
            device = p.device if on_device else torch.device('cpu')
            dtype = torch.float32 if group.get('fused') else step.dtype
            if step.device != device or step.dtype != dtype:
                state['step'] = step.to(device=device, dtype=dtype)
                changed = True
    return changed


# ----------------------------------------------------------------- channels_last
def _to_channels_last(module, args):
    if args and isinstance(args[0], Tensor) and args[0].dim() == 4 and \
            args[0].is_floating_point():
        return (args[0].contiguous(memory_format=torch.channels_last), ) + args[1:]
    return None


def set_memory_format(model: nn.Module, channels_last: bool,
                      optimizers: Iterable[torch.optim.Optimizer] = (),
                      input_hooks: Optional[list] = None) -> list:
    """Put the 4-D parameters and buffers of ``model`` (every sub-model) in
    channels_last (or back to contiguous) memory format, in place (the Parameter
    objects stay, so optimisers keep them); each ``optimizers``' per-parameter state
    of a parameter's shape (AdamW's moments) follows its parameter's layout.

    With ``channels_last`` the image entering each segmentor's backbone (every module
    with ``extract_feat`` and a ``backbone``) is made channels_last by a forward
    pre-hook; the hooks' handles are returned (pass them back as ``input_hooks`` to
    remove them when switching back)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    for optimizer in optimizers:
        for p, state in optimizer.state.items():
            for key, value in state.items():
                if isinstance(value, Tensor) and value.shape == p.shape and \
                        value.dim() == 4 and value.stride() != p.stride():
                    state[key] = torch.empty_like(p).copy_(value)
    for handle in input_hooks or []:
        handle.remove()
    handles = []
    if channels_last:
        for module in model.modules():
            backbone = getattr(module, 'backbone', None)
            if isinstance(backbone, nn.Module) and callable(
                    getattr(module, 'extract_feat', None)):
                handles.append(backbone.register_forward_pre_hook(_to_channels_last))
    return handles


# ---------------------------------------------------------------------- compile
def encoder_modules(model: nn.Module) -> Dict[str, nn.Module]:
    """The encoders ``compile`` compiles, by name in ``model``: the student's backbone
    g (of a UDA model with a ``student``, or of a segmentor) and, where DiDA wrapped
    it into a :class:`DiffusionEncoder`, g and g' inside the wrapper (not the wrapper,
    whose timestep scope is Python state)."""
    student = getattr(model, 'student', None)
    prefix = 'student.backbone' if student is not None else 'backbone'
    student = model if student is None else student
    backbone = getattr(student, 'backbone', None)
    if not isinstance(backbone, nn.Module):
        raise TypeError(f'speed.compile: {type(model).__name__} has no student '
                        'backbone to compile')
    if isinstance(backbone, DiffusionEncoder):
        out = {f'{prefix}.backbone': backbone.backbone}
        if getattr(backbone, 'g_prime', None) is not None:
            out[f'{prefix}.g_prime'] = backbone.g_prime
        return out
    return {prefix: backbone}


def compile_encoders(model: nn.Module, **kwargs) -> List[str]:
    """``torch.compile(**kwargs)`` each of :func:`encoder_modules`, in place
    (``nn.Module.compile``); returns their names."""
    modules = encoder_modules(model)
    for module in modules.values():
        module.compile(**kwargs)
    return list(modules)

"""Deployment: the plain mmseg segmentor and config a training run stands for.

A training model holds more than the network it deploys: a self-training model (DACS,
for DAFormer, HRDA and MIC) keeps an EMA teacher, a frozen ImageNet model and its
plug-ins beside the student; DiDA puts g' and its time FiLMs around the student's
backbone g and keeps h' in its plug-in. The deployed model is the student with g
alone -- the baseline's architecture, parameter for parameter. This module makes it:

* :func:`deploy_segmentor` -- a training model -> the plain mmseg segmentor (a copy);
* :func:`deploy_config` -- a training config -> the plain mmseg config;
* :func:`save_deployable` -- both written to ``<name>.pth`` / ``<name>_config.py``;
* :func:`deployed_key_map`, :func:`deployed_name` -- where each tensor of a training
  state goes in the deployed model (the checkpoint loader's layout mapping).

It knows no method by name; the parts declare themselves (the deploy contract):

* a self-training model deploys as the segmentor it trains, its ``student``
  (:data:`SEGMENTOR_ATTR`); anything else beside it (teacher, ImageNet model,
  plug-ins with h') is training-only;
* a training-time wrapper inside that segmentor (DiDA's
  :class:`~mmseg_dida.models.backbones.DiffusionEncoder` around g) defines
  ``deploy_module()`` -- the module that replaces it at deployment -- and the class
  method ``deployed_state_key(key)`` -- the key each tensor of its state dict has in
  that module, or None for a training-only tensor (g', the time MLP, the FiLMs); a
  wrapper class registered in ``MODELS`` is found by the loader without an instance;
* a hook that only makes sense while training (DiDA's, the UDA pictures, the
  pseudo-label statistics) sets the class attribute ``training_only = True`` and is
  left out of the deployed config.
"""
import copy
import os.path as osp
from typing import Collection, Dict, List, Optional, Tuple

from mmengine.config import Config, ConfigDict
from mmseg.registry import HOOKS, MODELS
from torch import nn

from ..utils.atomic_files import atomic_torch_save, atomic_write_text

__all__ = ['SEGMENTOR_ATTR', 'is_wrapper', 'training_segmentor', 'replace_wrappers',
           'deploy_segmentor', 'deployed_key_map', 'wrapper_classes', 'deployed_name',
           'deploy_config', 'drop_training_only_hooks', 'is_training_only_hook',
           'save_deployable']

#: The attribute under which a self-training model holds the segmentor it trains
#: (DACS and the methods built on it); its checkpoints hold that segmentor's tensors
#: under ``student.``.
SEGMENTOR_ATTR = 'student'


# ------------------------------------------------------------------------ model
def is_wrapper(module) -> bool:
    """Whether ``module`` is replaced by another module at deployment."""
    return callable(getattr(module, 'deploy_module', None))


def training_segmentor(model: nn.Module) -> nn.Module:
    """The segmentor a training model trains, as it is (not a copy): the student of
    a self-training model, else the model itself."""
    return getattr(model, SEGMENTOR_ATTR, model)


def replace_wrappers(module: nn.Module) -> nn.Module:
    """Replace, in place, every wrapper inside ``module`` by its ``deploy_module()``;
    returns ``module`` (or what replaces it, when ``module`` is itself a wrapper).
    DiDA's teacher is its student with this applied (the teacher keeps g only)."""
    if is_wrapper(module):
        return replace_wrappers(module.deploy_module())
    for name, child in list(module.named_children()):
        if is_wrapper(child):
            setattr(module, name, replace_wrappers(child))
        else:
            replace_wrappers(child)
    return module


def deploy_segmentor(model: nn.Module) -> nn.Module:
    """The deployable segmentor of a training model: a copy of its
    :func:`training_segmentor` with every wrapper replaced by what it deploys as. The
    teacher, the ImageNet model, the plug-ins (h') and the wrappers' training-only
    parts (g', the time MLP and FiLMs) are left behind; ``model`` is not changed."""
    return replace_wrappers(copy.deepcopy(training_segmentor(model)))


def deployed_key_map(module: nn.Module) -> Dict[str, Optional[str]]:
    """Each state-dict key of ``module`` (a training segmentor) -> the key of the same
    tensor in the module deployed from it (:func:`replace_wrappers`), or None for a
    training-only tensor, as the wrappers inside it describe their layout."""
    if is_wrapper(module):
        inner = deployed_key_map(module.deploy_module())
        out = {}
        for key in module.state_dict():
            own = module.deployed_state_key(key)
            if own is not None and own not in inner:
                raise KeyError(f'{type(module).__name__}.deployed_state_key({key!r}) '
                               f'gives {own!r}, which its deploy_module() does not have')
            out[key] = None if own is None else inner[own]
        return out
    children = {n: c for n, c in module._modules.items() if c is not None}
    out = {k: k for k in module.state_dict() if k.split('.', 1)[0] not in children}
    for name, child in children.items():
        for key, dep in deployed_key_map(child).items():
            out[f'{name}.{key}'] = None if dep is None else f'{name}.{dep}'
    return out


def wrapper_classes() -> List[type]:
    """The registered model classes that declare the wrapper contract."""
    return [cls for cls in MODELS.module_dict.values()
            if isinstance(cls, type) and is_wrapper(cls)
            and callable(getattr(cls, 'deployed_state_key', None))]


def deployed_name(key: str, expected: Collection[str],
                  wrappers: Optional[List[type]] = None) -> Optional[str]:
    """The name in a deployed segmentor (whose keys are ``expected``) of the tensor
    ``key`` of a training segmentor's state, when the training model is not at hand:
    ``key`` itself, or for a tensor ``M.rel`` of a wrapper at module path ``M``,
    ``M.`` + the wrapper class's ``deployed_state_key(rel)``; None when the deployed
    model has no such tensor (a training-only tensor or another architecture)."""
    if key in expected:
        return key
    parts = key.split('.')
    for cls in wrapper_classes() if wrappers is None else wrappers:
        for i in range(len(parts) - 1, -1, -1):
            own = cls.deployed_state_key('.'.join(parts[i:]))
            if own is None:
                continue
            name = '.'.join(parts[:i] + [own])
            if name in expected:
                return name
    return None


# ----------------------------------------------------------------------- config
def deploy_config(cfg: Config) -> Config:
    """A plain mmseg segmentor config from a training config: ``model`` becomes the
    UDA model's ``segmentor`` (keeping the data preprocessor), the hooks whose class
    sets ``training_only = True`` are dropped (custom and default hooks:
    :func:`drop_training_only_hooks`); data, evaluation and runtime settings
    are kept. ``cfg`` is not changed."""
    cfg = copy.deepcopy(cfg)
    model = cfg.model
    if 'segmentor' in model:
        seg = ConfigDict(copy.deepcopy(model.segmentor))
        if 'data_preprocessor' not in seg and 'data_preprocessor' in model:
            seg.data_preprocessor = model.data_preprocessor
        cfg.model = seg
    drop_training_only_hooks(cfg)
    cfg.pop('work_dir', None)  # the training run's folder is not the deployed model's
    return cfg


def drop_training_only_hooks(cfg: Config) -> None:
    """Remove from ``cfg`` (in place) every custom hook and every default hook
    whose class sets ``training_only = True`` (the training lifecycle: graceful stop,
    non-finite guard, deferred runtime info, speed options; DiDA's and the
    pseudo-label hooks): what a test run and a deployed config do without. mmengine
    fills a removed standard default hook (``runtime_info``) with its own."""
    hooks = cfg.get('custom_hooks', None) or []
    cfg.custom_hooks = [h for h in hooks if not is_training_only_hook(h)]
    defaults = cfg.get('default_hooks', None) or {}
    for key in [k for k, h in defaults.items()
                if isinstance(h, dict) and is_training_only_hook(h)]:
        defaults.pop(key)


def is_training_only_hook(hook_cfg: dict) -> bool:
    """Whether the hook of ``hook_cfg`` (its type a registered name or a class)
    declares ``training_only = True``; an unknown type is kept (False)."""
    hook_type = hook_cfg.get('type')
    if not isinstance(hook_type, str):
        return getattr(hook_type, 'training_only', False)
    with HOOKS.switch_scope_and_registry(None) as registry:
        cls = registry.get(hook_type)
    return getattr(cls, 'training_only', False)


# ------------------------------------------------------------------------ files
def save_deployable(model: nn.Module, cfg: Optional[Config], out_dir: str,
                    name: str = 'deploy') -> Tuple[str, Optional[str]]:
    """Write ``<out_dir>/<name>.pth`` (``{'meta': ..., 'state_dict': ...}`` of the
    deployed segmentor, loadable by mmseg's ``init_model``/``load_from``) and, when a
    config is given, ``<out_dir>/<name>_config.py`` (plain mmseg segmentor config),
    each complete or absent. Returns both paths (the config's None without ``cfg``)."""
    segmentor = deploy_segmentor(model)
    state = {k: v.detach().cpu() for k, v in segmentor.state_dict().items()}
    meta = dict(num_params=sum(p.numel() for p in segmentor.parameters()),
                dataset_meta=getattr(model, 'dataset_meta', None))
    cfg_path = None
    if cfg is not None:
        plain = deploy_config(cfg)
        cfg_path = osp.join(out_dir, f'{name}_config.py')
        meta['config'] = plain.pretty_text
        atomic_write_text(cfg_path, plain.pretty_text)
    ckpt_path = osp.join(out_dir, f'{name}.pth')
    atomic_torch_save(dict(meta=meta, state_dict=state), ckpt_path)
    return ckpt_path, cfg_path

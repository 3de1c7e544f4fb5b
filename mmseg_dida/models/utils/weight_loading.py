"""Loading ImageNet-pretrained backbone weights with a check that they were loaded.

mmengine's ``Pretrained`` initialiser loads with ``strict=False``: a checkpoint whose
keys use another layout (e.g. SegFormer's original MiT file ``mit_b5.pth`` into mmseg
1.x's ``MixVisionTransformer``) matches nothing, and training silently starts from
random weights. DAFormer/HRDA/MIC/DiDA all depend on ImageNet initialisation, so here
loading is counted: ``loaded N of M parameters`` is logged and an error is raised when
fewer than ``min_fraction * M`` tensors of the module were loaded.

Configs use it as an initialiser::

    backbone=dict(..., init_cfg=dict(type='CheckedPretrained',
                                     checkpoint='pretrained/mit_b5_mmseg.pth'))
"""
import math
import os
import os.path as osp
import pickle
from typing import Dict, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model.weight_init import update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from torch import nn

__all__ = ['CheckedPretrained', 'PretrainedLoadError', 'load_pretrained_checked',
           'load_source_checkpoint', 'read_state_dict']

CONVERT_HINT = (
    'Get the public ImageNet weights and convert them to mmseg 1.x keys:\n'
    '  MiT (SegFormer, e.g. mit_b5.pth from the SegFormer release):\n'
    '    python tools/model_converters/mit2mmseg_dida.py mit_b5.pth '
    'pretrained/mit_b5_mmseg.pth\n'
    '  ResNet-101 V1c (open-mmlab://resnet101_v1c = https://download.openmmlab.com/'
    'pretrain/third_party/resnet101_v1c-e67eebb6.pth):\n'
    '    python tools/model_converters/resnet2mmseg.py resnet101_v1c-e67eebb6.pth '
    'pretrained/resnet101_v1c_mmseg.pth\n'
    "  The procedural benchmark's formula-pretrained small MiT (shipped in the "
    'repository; pretrained/README.md):\n'
    '    python tools/pretrain_formula.py --out pretrained/mit_tiny_formula.pth')


class PretrainedLoadError(RuntimeError):
    """Raised when a pretrained checkpoint cannot be found or loads too few weights."""


def _is_remote(path: str) -> bool:
    return '://' in path


def load_source_checkpoint(path: str, trust_file: bool = False):
    """Load a public checkpoint for the offline converters (tools/model_converters).

    Safe loading by default; ``trust_file`` allows full unpickling for a file from a
    trusted source whose metadata the safe loader rejects. A refusal is a
    :class:`PretrainedLoadError` that names the file and the ``--trust-file`` way out.
    """
    try:
        return torch.load(path, map_location='cpu', weights_only=not trust_file)
    except pickle.UnpicklingError as err:
        raise PretrainedLoadError(
            f'{path}: the safe loader refused it ({err}). If the file comes from a '
            'source you trust, rerun with --trust-file.') from None


def read_state_dict(checkpoint: str, map_location='cpu') -> Dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat state dict.

    Unwraps ``state_dict``/``model`` containers and strips DataParallel's
    ``module.`` prefix. Local files are read with ``torch.load(weights_only=True)``;
    URLs and ``open-mmlab://`` names go through mmengine's loader.
    """
    if _is_remote(checkpoint):
        from mmengine.runner.checkpoint import _load_checkpoint
        ckpt = _load_checkpoint(checkpoint, map_location=map_location)
    else:
        if not osp.isfile(checkpoint):
            raise PretrainedLoadError(
                f"Pretrained checkpoint '{checkpoint}' does not exist (resolved to "
                f"'{osp.abspath(checkpoint)}').\n{CONVERT_HINT}")
        ckpt = torch.load(checkpoint, map_location=map_location, weights_only=True)
    for key in ('state_dict', 'model'):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    if not isinstance(ckpt, dict):
        raise PretrainedLoadError(
            f"Checkpoint '{checkpoint}' holds a {type(ckpt).__name__}, "
            'not a state dict')
    return {(k[len('module.'):] if k.startswith('module.') else k): v
            for k, v in ckpt.items() if isinstance(v, torch.Tensor)}


def _layout_hint(keys) -> str:
    keys = list(keys)
    if any(k.startswith(('patch_embed1.', 'block1.')) for k in keys):
        return ("\nThe checkpoint uses SegFormer's original MiT keys (patch_embed1, "
                'block1, ...): convert it with tools/model_converters/'
                'mit2mmseg_dida.py.')
    if 'conv1.weight' in keys and 'stem.0.weight' not in keys:
        return ('\nThe checkpoint has a single 7x7 stem (torchvision/ResNetV1b); '
                'ResNetV1c needs the deep-stem weights open-mmlab://resnet101_v1c, '
                'see tools/model_converters/resnet2mmseg.py.')
    return ''


def load_pretrained_checked(module: nn.Module,
                            checkpoint: str,
                            prefix: Optional[str] = None,
                            min_fraction: float = 1.0,
                            map_location='cpu',
                            logger='current') -> Tuple[int, int]:
    """Load ``checkpoint`` into ``module`` and check how much of it was loaded.

    Args:
        module: The module to initialise (e.g. a backbone).
        checkpoint: Path (or URL) of a state-dict checkpoint in the module's key layout.
        prefix: If given, only checkpoint keys starting with it are used, with the
            prefix removed (e.g. ``'backbone.'`` to take a segmentor's backbone).
        min_fraction: Fraction of the module's state-dict tensors (BN's
            ``num_batches_tracked`` counters excluded) that must be loaded with a
            matching shape; 1.0 (default) = all.
        map_location: Passed to ``torch.load``.
        logger: mmengine logger for the ``loaded N of M parameters`` line.

    Returns:
        (loaded, total) tensor counts.

    Raises:
        PretrainedLoadError: the file is missing, or fewer than
            ``ceil(min_fraction * total)`` tensors were loaded (the error lists
            missing keys, shape mismatches and the likely converter to use).
    """
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f'load_pretrained_checked: min_fraction must be in (0, 1], '
                         f'got {min_fraction}')
    state = read_state_dict(checkpoint, map_location=map_location)
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    full = module.state_dict()
    own = {k: v for k, v in full.items() if not k.endswith('num_batches_tracked')}
    loadable, mismatched = {}, []
    for key, value in state.items():
        if key in own:
            if tuple(value.shape) == tuple(own[key].shape):
                loadable[key] = value
            else:
                mismatched.append(f'{key}: checkpoint {tuple(value.shape)} vs '
                                  f'model {tuple(own[key].shape)}')
        elif key in full:  # num_batches_tracked
            loadable[key] = value
    module.load_state_dict(loadable, strict=False)
    loaded = sum(1 for k in loadable if k in own)
    total = len(own)
    missing = [k for k in own if k not in loadable]
    unexpected = [k for k in state if k not in full]
    name = type(module).__name__
    print_log(f'{name}: loaded {loaded} of {total} parameters from {checkpoint}'
              + (f' ({len(unexpected)} checkpoint keys unused, e.g. '
                 f'{unexpected[:3]})' if unexpected else ''), logger=logger)
    required = math.ceil(min_fraction * total - 1e-9)
    if loaded < required:
        detail = [f'{name}: loaded only {loaded} of {total} parameters from '
                  f"'{checkpoint}' (at least {required} required, min_fraction="
                  f'{min_fraction}).']
        if missing:
            detail.append(f'Not loaded ({len(missing)}), e.g. {missing[:5]}.')
        if mismatched:
            detail.append(f'Shape mismatches ({len(mismatched)}), e.g. '
                          f'{mismatched[:3]}.')
        if unexpected:
            detail.append(f'Checkpoint keys the model does not have '
                          f'({len(unexpected)}), e.g. {unexpected[:5]}.')
        raise PretrainedLoadError(' '.join(detail) + _layout_hint(state))
    return loaded, total


@WEIGHT_INITIALIZERS.register_module()
class CheckedPretrained:
    """``init_cfg`` type: :func:`load_pretrained_checked` as an mmengine initialiser.

    Same arguments as mmengine's ``Pretrained`` plus ``min_fraction`` (default 1.0:
    every tensor of the module must be loaded).
    """

    def __init__(self, checkpoint: str, prefix: Optional[str] = None,
                 min_fraction: float = 1.0, map_location='cpu'):
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError('CheckedPretrained: checkpoint must be a path, got '
                            f'{type(checkpoint).__name__}')
        if not 0.0 < min_fraction <= 1.0:
            raise ValueError(f'CheckedPretrained: min_fraction must be in (0, 1], '
                             f'got {min_fraction}')
        self.checkpoint = str(checkpoint)
        self.prefix = prefix
        self.min_fraction = min_fraction
        self.map_location = map_location

    def __call__(self, module: nn.Module) -> None:
        load_pretrained_checked(module, self.checkpoint, prefix=self.prefix,
                                min_fraction=self.min_fraction,
                                map_location=self.map_location)
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self) -> str:
        return f'{type(self).__name__}: load from {self.checkpoint}'

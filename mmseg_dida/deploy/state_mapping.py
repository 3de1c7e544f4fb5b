"""A checkpoint's tensors read, compared with a model's and mapped between layouts.

* :func:`read_state_dict` -- (state dict, meta) of a checkpoint file or dict, refused
  with :class:`CheckpointReadError` when the file is missing, truncated or not a
  checkpoint;
* :class:`LoadReport` -- what a load did (layout, loaded / missing / unexpected /
  other-shape / dropped keys) and its one-line summary;
* :func:`student_to_segmentor` -- a UDA training state's student tensors under a plain
  segmentor's names (teacher, plug-ins, ImageNet model and the wrappers'
  training-only tensors dropped); :func:`segmentor_into_student` -- a plain segmentor
  state under a UDA model's student names. The wrappers' layouts (DiDA's
  DiffusionEncoder keeping g under its ``backbone.``) come from the wrappers
  themselves, through the deploy contract (:mod:`mmseg_dida.deploy`).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Tuple, Union

import torch
from torch import nn

from ..utils.atomic_files import checkpoint_problem
from .core import (
    SEGMENTOR_ATTR,
    deployed_key_map,
    deployed_name,
    training_segmentor,
    wrapper_classes,
)

__all__ = ['CheckpointReadError', 'CheckpointMismatchError', 'LoadReport',
           'read_state_dict', 'compare', 'student_to_segmentor',
           'segmentor_into_student', 'likely_cause']

#: The prefix of a UDA training checkpoint's student tensors.
STUDENT = SEGMENTOR_ATTR + '.'


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read (missing, truncated, not a checkpoint)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint whose tensors do not match the model; the message is one line."""


@dataclass
class LoadReport:
    """What :func:`~mmseg_dida.deploy.model_loading.load_model_weights` did.

    Attributes:
        layout: 'same' (names as in the model), 'uda->segmentor' (a UDA training
            checkpoint's student loaded into a plain segmentor) or 'segmentor->uda'
            (a plain segmentor checkpoint loaded into a UDA model's student).
        loaded: Number of tensors loaded.
        missing, unexpected, mismatched: Model keys without a tensor, checkpoint keys
            not used, keys of different shape (``name: ckpt shape vs model shape``).
        dropped: Checkpoint keys left out on purpose by the layout mapping
            (training-only parts).
        meta: The checkpoint's ``meta`` dict ({} if none).
    """
    layout: str = 'same'
    loaded: int = 0
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 3) -> str:
        parts = []
        for name, keys in (('missing', self.missing), ('unexpected', self.unexpected),
                           ('of another shape', self.mismatched)):
            if keys:
                more = f', ... {len(keys) - limit} more' if len(keys) > limit else ''
                parts.append(f"{len(keys)} {name} ({', '.join(keys[:limit])}{more})")
        return '; '.join(parts) or 'all keys match'


def read_checkpoint(path: str, map_location='cpu', mmap: bool = False):
    """The object saved in the checkpoint file ``path`` (``mmap``: its tensors
    memory-mapped, not read); a :class:`CheckpointReadError` (one line) when it is
    missing, truncated or cannot be read."""
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointReadError(f'checkpoint {path} cannot be used: {problem}')
    try:
        # safe loading (runner checkpoints: see mmseg_dida.compat)
        return torch.load(path, map_location=map_location, mmap=mmap)
    except Exception as e:  # a corrupt archive member, an unknown pickled class
        raise CheckpointReadError(f'checkpoint {path} cannot be read: '
                                  f'{type(e).__name__}: {str(e).splitlines()[0]}'
                                  ) from e


def checkpoint_tensor_names(path: str) -> set:
    """The names of the model tensors in the checkpoint file ``path`` (memory-mapped:
    the tensors are not read)."""
    state, _ = read_state_dict(read_checkpoint(path, mmap=True))
    return set(state)


def read_state_dict(checkpoint: Union[str, dict], map_location='cpu'
                    ) -> Tuple[Dict[str, torch.Tensor], dict]:
    """(state_dict, meta) of a checkpoint file or loaded checkpoint dict. The
    ``module.`` prefix of data-parallel wrappers is removed."""
    if isinstance(checkpoint, str):
        checkpoint = read_checkpoint(checkpoint, map_location)
    if not isinstance(checkpoint, dict):
        raise CheckpointReadError(f'a checkpoint is a dict, got {type(checkpoint).__name__}')
    meta = checkpoint.get('meta') if isinstance(checkpoint.get('meta'), dict) else {}
    state = checkpoint.get('state_dict', checkpoint.get('model', checkpoint))
    if not isinstance(state, dict):
        raise CheckpointReadError('the checkpoint has no state_dict')
    state = {(k[7:] if k.startswith('module.') else k): v for k, v in state.items()
             if isinstance(v, torch.Tensor)}
    return state, meta


def compare(expected: Dict[str, torch.Size], state: Dict[str, torch.Tensor]
            ) -> Tuple[List[str], List[str], List[str]]:
    """(missing, unexpected, other-shape) keys of ``state`` against the names and
    shapes ``expected``."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f'{k}: {tuple(state[k].shape)} vs {tuple(s)}'
                  for k, s in expected.items() if k in state and state[k].shape != s]
    return missing, unexpected, mismatched


def student_to_segmentor(state: Dict[str, torch.Tensor],
                         expected: Dict[str, torch.Size]
                         ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """A UDA training state's student tensors under the names of a plain segmentor
    (``expected``), and the keys left out (everything beside the student, and the
    student's tensors the segmentor does not have: a wrapper's training-only ones)."""
    mapped, dropped, wrappers = {}, [], wrapper_classes()
    for k, v in state.items():
        name = (deployed_name(k[len(STUDENT):], expected, wrappers)
                if k.startswith(STUDENT) else None)
        if name is None:
            dropped.append(k)
        else:
            mapped[name] = v
    return mapped, dropped


def segmentor_into_student(model: nn.Module, state: Dict[str, torch.Tensor]
                           ) -> Tuple[Dict[str, torch.Tensor], List[str], List[str]]:
    """A plain segmentor state under the UDA model's student names; returns
    (mapped state, deployable keys missing in the checkpoint, unused keys). The
    deployable keys are those of the student's deployed segmentor."""
    key_map = deployed_key_map(training_segmentor(model))
    training_key = {dep: k for k, dep in key_map.items() if dep is not None}
    mapped, unused = {}, []
    for k, v in state.items():
        if k in training_key:
            mapped[STUDENT + training_key[k]] = v
        else:
            unused.append(k)
    missing = [k for k in training_key if k not in state]
    return mapped, missing, unused


def likely_cause(model_keys, ckpt_keys, mismatched) -> str:
    """The most likely reason why a checkpoint does not fit a model, in words."""
    model_uda = any(k.startswith(STUDENT) for k in model_keys)
    ckpt_uda = any(k.startswith(STUDENT) for k in ckpt_keys)
    if ckpt_uda and not model_uda:
        return ('a UDA training checkpoint for a plain segmentor config of another '
                'architecture (the keys above compare its student with this model)')
    if model_uda and not ckpt_uda:
        return ('a plain segmentor checkpoint for a UDA training config of another '
                "architecture (the keys above compare it with the UDA model's "
                'deployable student)')
    if mismatched and not set(model_keys) ^ set(ckpt_keys):
        return 'the same layout with other sizes (num_classes or widths differ)'
    return 'a checkpoint of another architecture or config'

"""The mean teacher of DACS/DAFormer (Tarvainen & Valpola, 2017; DAFormer Sec. 3.1).

    phi_{t+1} = alpha_t phi_t + (1 - alpha_t) theta_t,   alpha_t = min(1 - 1/(t + 1), alpha)

over parameters only (buffers such as BN running statistics are not averaged). At the
first step the teacher is a copy of the student. The teacher stays in train mode (so its
BN layers use batch statistics, as in DAFormer) but with Dropout and DropPath switched off.

The teacher may keep only part of the student: ``strip`` callables (from the UDA
plug-ins, e.g. DiDA removing its training-only encoder g') reshape the copy, and every
teacher tensor is paired by name with the student tensor it was copied from, so the EMA
averages exactly what the teacher keeps, whatever the names became.
"""
import copy
from typing import Callable, Dict, Iterable, Optional

import torch
from torch import nn

__all__ = ['EMATeacher', 'ema_alpha', 'disable_stochastic_layers']


def ema_alpha(iteration: int, alpha: float) -> float:
    """alpha_t = min(1 - 1 / (t + 1), alpha): 0 at t = 0, ramps up to ``alpha``."""
    return min(1.0 - 1.0 / (iteration + 1), alpha)


def _is_stochastic(module: nn.Module) -> bool:
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return True
    # mmcv's and timm's DropPath (any class named DropPath).
    return type(module).__name__ == 'DropPath'


def disable_stochastic_layers(model: nn.Module) -> None:
    """Put every Dropout and DropPath of ``model`` in eval mode (others untouched)."""
    for m in model.modules():
        if _is_stochastic(m):
            m.training = False


class EMATeacher(nn.Module):
    """Exponential moving average copy of a student network.

    Args:
        student (nn.Module): The network to copy (deep-copied once here).
        alpha (float): Maximum EMA momentum. Default 0.999 (DAFormer).
        strip (Iterable[Callable[[nn.Module], nn.Module]], optional): Applied in turn
            to the copy; each returns the module the teacher keeps (parts of the
            student the teacher does not need are dropped).
    """

    def __init__(self, student: nn.Module, alpha: float = 0.999,
                 strip: Optional[Iterable[Callable[[nn.Module], nn.Module]]] = None):
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f'EMATeacher: alpha must be in [0, 1), got {alpha}')
        self.alpha = alpha
        memo: Dict[int, object] = {}
        model = copy.deepcopy(student, memo)
        for fn in strip or ():
            model = fn(model)
        self.model = model
        # teacher name -> student name, through the deep copy's memo (id -> copy).
        self._param_map = self._match_names(model.named_parameters(),
                                     student.named_parameters(), memo, 'parameter')
        self._buffer_map = self._match_names(model.named_buffers(),
                                      student.named_buffers(), memo, 'buffer')
        for p in self.model.parameters():
            p.requires_grad_(False)
        disable_stochastic_layers(self.model)

    @staticmethod
    def _match_names(teacher_named, student_named, memo: dict, kind: str) -> Dict[str, str]:
        copied = {id(memo[id(s)]): name for name, s in student_named if id(s) in memo}
        pairs = {}
        for name, t in teacher_named:
            if id(t) not in copied:
                raise RuntimeError(f'EMATeacher: teacher {kind} {name!r} is not a copy '
                                   'of a student tensor (a strip function built new '
                                   'modules?)')
            pairs[name] = copied[id(t)]
        return pairs

    def _tensor_pairs(self, student: nn.Module, buffers: bool = False):
        """(teacher tensor, student tensor) pairs, looked up by name each time (so
        that ``.to()``/``.cuda()`` replacing tensors cannot leave stale pairs)."""
        mapping = self._buffer_map if buffers else self._param_map
        t_named = dict(self.model.named_buffers() if buffers else
                       self.model.named_parameters())
        s_named = dict(student.named_buffers() if buffers else
                       student.named_parameters())
        missing = [s for s in mapping.values() if s not in s_named]
        if missing:
            raise RuntimeError(f'EMATeacher: the student has no {missing[:3]} any more '
                               f'({len(missing)} missing); was it changed after the '
                               'teacher was built?')
        return [(t_named[t], s_named[s]) for t, s in mapping.items()]

    def train(self, mode: bool = True):
        super().train(mode)
        disable_stochastic_layers(self.model)
        return self

    @torch.no_grad()
    def copy_from(self, student: nn.Module) -> None:
        """phi <- theta (parameters and buffers), used at iteration 0."""
        for t, s in self._tensor_pairs(student) + self._tensor_pairs(student, buffers=True):
            t.copy_(s)

    @torch.no_grad()
    def update(self, student: nn.Module, iteration: int) -> float:
        """One EMA step over parameters; returns the alpha_t used."""
        a = ema_alpha(iteration, self.alpha)
        for t, s in self._tensor_pairs(student):
            t.mul_(a).add_(s.detach(), alpha=1.0 - a)
        return a

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

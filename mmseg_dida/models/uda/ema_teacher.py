"""The mean teacher of DACS/DAFormer (Tarvainen & Valpola, 2017; DAFormer Sec. 3.1).

    phi_{t+1} = alpha_t phi_t + (1 - alpha_t) theta_t,   alpha_t = min(1 - 1/(t + 1), alpha)

over parameters only (buffers such as BN running statistics are not averaged). At the
first step the teacher is a copy of the student. The teacher stays in train mode (so its
BN layers use batch statistics, as in DAFormer) but with Dropout and DropPath switched off.
"""
import copy

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
    """

    def __init__(self, student: nn.Module, alpha: float = 0.999):
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f'EMATeacher: alpha must be in [0, 1), got {alpha}')
        self.alpha = alpha
        self.model = copy.deepcopy(student)
        for p in self.model.parameters():
            p.requires_grad_(False)
        disable_stochastic_layers(self.model)

    def train(self, mode: bool = True):
        super().train(mode)
        disable_stochastic_layers(self.model)
        return self

    @torch.no_grad()
    def copy_from(self, student: nn.Module) -> None:
        """phi <- theta (parameters and buffers), used at iteration 0."""
        for t, s in zip(self.model.parameters(), student.parameters()):
            t.copy_(s)
        for t, s in zip(self.model.buffers(), student.buffers()):
            t.copy_(s)

    @torch.no_grad()
    def update(self, student: nn.Module, iteration: int) -> float:
        """One EMA step over parameters; returns the alpha_t used."""
        a = ema_alpha(iteration, self.alpha)
        t_params = list(self.model.parameters())
        s_params = list(student.parameters())
        if len(t_params) != len(s_params):
            raise RuntimeError('EMATeacher: teacher and student have different '
                               f'parameter counts ({len(t_params)} vs {len(s_params)})')
        for t, s in zip(t_params, s_params):
            t.mul_(a).add_(s.detach(), alpha=1.0 - a)
        return a

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

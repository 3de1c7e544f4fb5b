"""The random state of a process and of the modules that draw from their own generator.

Two users: the resume state of a checkpoint
(:mod:`mmseg_dida.engine.resume.state`) and the out-of-memory replay of a training step
(:mod:`mmseg_dida.models.uda.memory_fallback`), which both need "every random number
that the next step will draw" captured and restored exactly.

* :func:`process_rng_state`: python ``random``, numpy's global generator, torch's CPU
  generator and, when CUDA is initialised, every CUDA device's generator;
* :func:`module_generators`: the modules of a model that offer ``rng_state()`` and
  ``set_rng_state(state, device=None)`` (DiDA's degradation module drawing t and eps,
  MIC's masks), found by duck typing so that this module imports no method.
"""
import random
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

__all__ = ['process_rng_state', 'set_process_rng_state', 'has_rng_state',
           'module_generators', 'module_device']


def process_rng_state() -> dict:
    """The random states of this process (python, numpy, torch CPU and CUDA)."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_process_rng_state(state: dict) -> None:
    """Restore :func:`process_rng_state`."""
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def has_rng_state(obj) -> bool:
    """Whether ``obj`` offers ``rng_state()`` and ``set_rng_state(state, device)``."""
    return callable(getattr(obj, 'rng_state', None)) and callable(
        getattr(obj, 'set_rng_state', None))


def module_generators(model: nn.Module) -> Dict[str, nn.Module]:
    """The modules of ``model`` with their own generator, by qualified name ('' for
    ``model`` itself)."""
    return {n: m for n, m in model.named_modules() if has_rng_state(m)}


def module_device(obj) -> Optional[torch.device]:
    """The device of a module's first parameter or buffer (None: none, or not a
    module), where its generator's state is restored."""
    if isinstance(obj, nn.Module):
        for t in list(obj.parameters()) + list(obj.buffers()):
            return t.device
    return None

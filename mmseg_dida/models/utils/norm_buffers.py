"""Keep the normalisation statistics that inference uses out of training-only passes.

A BatchNorm layer in training mode normalises with the statistics of the batch it sees
and also moves its running mean/var (the statistics inference and an exported model
use) towards them. A training-only pass on inputs inference never sees (DiDA's
degraded images) must use batch statistics, as the method's maths asks, but must not
move the running ones: the deployed network would otherwise carry statistics of
noise. :func:`preserved_norm_buffers` gives exactly that: inside the scope everything
runs as usual; on exit every normalisation buffer of the module is bitwise what it was
on entry (running mean, running var, num_batches_tracked of BatchNorm, SyncBatchNorm
and tracking InstanceNorm layers). The tensors are restored in place, so references
to them (EMA pairing, optimiser state) stay valid. Activation checkpointing that
re-runs a forward inside backward is covered as long as the backward happens inside
the scope.
"""
from contextlib import contextmanager
from typing import Dict, Iterator

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

__all__ = ['norm_buffers', 'preserved_norm_buffers']


def norm_buffers(module: nn.Module) -> Dict[str, Tensor]:
    """The normalisation buffers of ``module`` by qualified name (live tensors)."""
    out = {}
    for prefix, m in module.named_modules():
        if isinstance(m, _NormBase):
            for name, buf in m.named_buffers(recurse=False):
                if buf is not None:
                    out[f'{prefix}.{name}' if prefix else name] = buf
    return out


@contextmanager
def preserved_norm_buffers(module: nn.Module) -> Iterator[None]:
    """Scope after which every normalisation buffer of ``module`` is restored."""
    live = norm_buffers(module)
    saved = {name: buf.detach().clone() for name, buf in live.items()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buf in live.items():
                buf.copy_(saved[name])

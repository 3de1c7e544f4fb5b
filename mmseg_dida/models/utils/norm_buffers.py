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

:func:`per_part_batch_norm` is the other half of a training-only pass's normalisation:
inside its scope every BatchNorm layer in training mode normalises consecutive parts of
its batch (DiDA: the degraded source images, then the degraded target images) with each
part's own batch statistics, as separate passes over the parts would.
"""
from contextlib import contextmanager
from typing import Dict, Iterator, Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

__all__ = ['norm_buffers', 'preserved_norm_buffers', 'has_batch_norm',
           'per_part_batch_norm']


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


def has_batch_norm(module: nn.Module) -> bool:
    """Whether ``module`` holds a BatchNorm layer (or SyncBatchNorm)."""
    return any(isinstance(m, _BatchNorm) for m in module.modules())


@contextmanager
def per_part_batch_norm(modules: Union[nn.Module, Sequence[nn.Module]],
                        sizes: Sequence[int]) -> Iterator[None]:
    """Scope in which every BatchNorm layer of ``modules`` (one module or several)
    normalises the parts ``sizes`` (consecutive, along the batch) of each input
    separately: in training mode with each part's batch statistics, and its running
    statistics moved once per part in order, exactly as consecutive passes over the
    parts would. An input whose batch is not ``sum(sizes)`` is an error. Layers in
    eval mode are unchanged; a layer's own ``forward`` attribute, if one was set
    before, is restored on exit."""
    sizes = [int(s) for s in sizes]
    total = sum(sizes)
    if isinstance(modules, nn.Module):
        modules = [modules]
    layers = list({id(m): m for module in modules for m in module.modules()
                   if isinstance(m, _BatchNorm)}.values())

    def split_forward(layer):
        plain = layer.forward

        def forward(x: Tensor) -> Tensor:
            if not layer.training:
                return plain(x)
            if x.shape[0] != total:
                raise ValueError(f'per_part_batch_norm: a batch of {x.shape[0]} in '
                                 f'{type(layer).__name__}, parts {sizes}')
            return torch.cat([plain(part) for part in x.split(sizes)])
        return forward

    saved = [(layer, layer.__dict__.get('forward')) for layer in layers]
    for layer in layers:
        layer.forward = split_forward(layer)
    try:
        yield
    finally:
        for layer, own in saved:
            if own is None:
                del layer.forward
            else:
                layer.forward = own

"""Data-parallel wrapper for UDA models whose step has several backward passes.

mmengine's ``MMDistributedDataParallel.train_step`` runs ``self(**data, mode='loss')``
and so never reaches a UDA model's own ``train_step``; ``MMSeparateDistributedDataParallel``
does, but the step's direct calls of child methods (``extract_feat``, head ``loss``) bypass
DDP's gradient hooks. This wrapper instead runs the model's ``forward_backward`` (all its
backward passes), averages every gradient over the processes once, and then steps::

    model_wrapper_cfg = dict(type='UDADistributedWrapper')

With N processes of batch B a step then equals one process with batch N*B whenever the
per-process losses are means over equally sized batches (and BN is synchronised or
absent). Parameters and buffers are broadcast from rank 0 when the wrapper is built.
"""
from typing import Dict, List

import torch
import torch.distributed as dist
from mmengine.registry import MODEL_WRAPPERS as ENGINE_MODEL_WRAPPERS
from mmseg.registry import MODEL_WRAPPERS
from torch import Tensor, nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

__all__ = ['UDADistributedWrapper']


@MODEL_WRAPPERS.register_module()
class UDADistributedWrapper(nn.Module):
    """Averages gradients over processes once per UDA step.

    Args:
        module (nn.Module): A UDA model with ``forward_backward(data, optim_wrapper)``
            and ``optimizer_step(optim_wrapper)`` (e.g. ``DACS``).
        bucket_size_mb (float): Size of the flattened all-reduce buckets. Default 25.
        broadcast_on_init (bool): Broadcast parameters and buffers from rank 0 when
            built. Default True.
        **kwargs: Accepted and ignored (keys of DDP configs such as
            ``find_unused_parameters``), so that configs can switch wrappers freely.
    """

    def __init__(self, module: nn.Module, bucket_size_mb: float = 25.0,
                 broadcast_on_init: bool = True, **kwargs):
        super().__init__()
        for name in ('forward_backward', 'optimizer_step'):
            if not callable(getattr(module, name, None)):
                raise TypeError(f'UDADistributedWrapper: {type(module).__name__} has '
                                f'no {name}() method')
        self.module = module
        self.bucket_size = int(bucket_size_mb * 1024 * 1024)
        if broadcast_on_init and self._distributed():
            with torch.no_grad():
                for tensor in list(module.parameters()) + list(module.buffers()):
                    dist.broadcast(tensor.data, src=0)

    @staticmethod
    def _distributed() -> bool:
        return (dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1)

    def _buckets(self, tensors: List[Tensor]) -> List[List[Tensor]]:
        buckets, current, size = [], [], 0
        for t in tensors:
            if current and (size + t.numel() * t.element_size() > self.bucket_size
                            or t.dtype != current[0].dtype):
                buckets.append(current)
                current, size = [], 0
            current.append(t)
            size += t.numel() * t.element_size()
        if current:
            buckets.append(current)
        return buckets

    @torch.no_grad()
    def all_reduce_grads(self) -> None:
        """Average the gradients of all trainable parameters over the processes.

        A trainable parameter without a gradient on this process (unused in its
        step) takes part with zeros, so every process reduces the same tensors."""
        if not self._distributed():
            return
        world = dist.get_world_size()
        grads = []
        for p in self.module.parameters():
            if not p.requires_grad:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        for bucket in self._buckets(grads):
            flat = _flatten_dense_tensors(bucket)
            dist.all_reduce(flat)
            flat.div_(world)
            for g, synced in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
                g.copy_(synced)

    def train_step(self, data, optim_wrapper) -> Dict[str, Tensor]:
        log_vars = self.module.forward_backward(data, optim_wrapper)
        self.all_reduce_grads()
        self.module.optimizer_step(optim_wrapper)
        return log_vars

    def val_step(self, data):
        return self.module.val_step(data)

    def test_step(self, data):
        return self.module.test_step(data)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


# mmengine looks wrappers up by type name in its root registry as well.
if 'UDADistributedWrapper' not in ENGINE_MODEL_WRAPPERS.module_dict:
    ENGINE_MODEL_WRAPPERS.register_module(module=UDADistributedWrapper)

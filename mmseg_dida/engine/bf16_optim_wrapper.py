"""bfloat16 mixed precision on any device (``tools/train.py --amp bf16``).

bfloat16 keeps float32's 8 exponent bits and drops mantissa bits (8 instead of 24):
products and sums lose precision but neither overflow nor underflow where float32 does
not (Kalamkar et al., "A Study of BFLOAT16 for Deep Learning Training", 2019). So,
unlike fp16 (mmengine's ``AmpOptimWrapper`` with dynamic loss scaling), bf16 needs no
loss scaling: the forward passes run under ``torch.autocast(dtype=torch.bfloat16)``
(matrix products and convolutions in bf16, the ops on torch's float32 lists in fp32),
the parameters, their gradients and the optimiser state stay float32, and ``backward``
and ``step`` are the plain wrapper's.

Which autocast is entered follows the model: CUDA autocast when its parameters are on
a CUDA device, else the CPU's. The two differ in their float32 lists (CUDA runs
``softmax``, ``log_softmax``, ``layer_norm``, ``group_norm`` and ``norm`` in fp32; the CPU
runs them in bf16, while both run ``cross_entropy``, ``nll_loss`` and ``mse_loss`` in
fp32), so the losses of this package cast their logits or predictions to float
themselves (``SegWeightLossMixin``, ``DICLoss``, ``ReconHead.loss``, the feature
distance, the pseudo labels).

Use::

    optim_wrapper = dict(type='BF16OptimWrapper', optimizer=dict(type='AdamW', ...))
"""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmseg.registry import OPTIM_WRAPPERS
from torch import nn

__all__ = ['BF16OptimWrapper', 'autocast_device_type']


def autocast_device_type(model: nn.Module) -> str:
    """'cuda' when the model's parameters are on a CUDA device, else 'cpu'."""
    param = next(model.parameters(), None)
    return 'cuda' if param is not None and param.is_cuda else 'cpu'


@OPTIM_WRAPPERS.register_module()
class BF16OptimWrapper(OptimWrapper):
    """:class:`~mmengine.optim.OptimWrapper` whose ``optim_context`` adds bfloat16
    autocast on the model's device; no loss scaling. Arguments are
    ``OptimWrapper``'s."""

    @contextmanager
    def optim_context(self, model: nn.Module):
        device_type = autocast_device_type(model)
        if device_type == 'cuda' and not torch.cuda.is_bf16_supported():
            raise RuntimeError('BF16OptimWrapper: this CUDA device does not support '
                               'bfloat16; use AmpOptimWrapper (fp16, tools/train.py '
                               '--amp fp16)')
        with super().optim_context(model), torch.autocast(device_type,
                                                          dtype=torch.bfloat16):
            yield

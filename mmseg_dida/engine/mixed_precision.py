"""Mixed precision: one rule, stated here.

* fp16 (``tools/train.py --amp`` or ``--amp fp16``, or ``AmpOptimWrapper`` in a
  config): float16 autocast with dynamic loss scaling, mmengine's wrapper. CUDA only;
  without CUDA it is one error line that names ``--amp bf16`` instead.
* bf16 (``--amp bf16``, or ``BF16OptimWrapper`` in a config): bfloat16 autocast
  without loss scaling (:class:`BF16OptimWrapper`), on CUDA* and on the CPU (the
  CPU's autocast).
* ``AmpOptimWrapper(dtype='bfloat16')``: mmengine's wrapper in bfloat16, CUDA only;
  without CUDA it is one error line that names ``BF16OptimWrapper``.

(* a CUDA device without bfloat16 is one error line too.) Nothing changes what was
asked for: :func:`precision_problem` names what cannot be had, and ``tools/train.py``
prints it before anything is written (:func:`set_mixed_precision` turns ``--amp``
into the wrapper). Weights, gradients, optimiser state and the EMA teacher stay
float32 in every case.

bfloat16 on any device (``tools/train.py --amp bf16``):

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
from typing import Optional

import torch
from mmengine.optim import OptimWrapper
from mmseg.registry import OPTIM_WRAPPERS
from torch import nn

__all__ = ['BF16OptimWrapper', 'autocast_device_type', 'AMP_WRAPPERS', 'precision_of',
           'precision_problem', 'set_mixed_precision']

#: ``--amp PRECISION`` -> the optimiser wrapper that trains in it
AMP_WRAPPERS = {'fp16': 'AmpOptimWrapper', 'bf16': 'BF16OptimWrapper'}


def precision_of(optim_wrapper: dict) -> str:
    """'fp16', 'bf16' or 'fp32': what the optimiser wrapper config trains in (its
    type with or without a scope, AmpOptimWrapper's ``dtype``)."""
    kind = str(optim_wrapper.get('type', 'OptimWrapper')).split('.')[-1]
    if kind == 'BF16OptimWrapper':
        return 'bf16'
    if kind == 'AmpOptimWrapper':
        return 'bf16' if 'bfloat16' in str(optim_wrapper.get('dtype') or '') else 'fp16'
    return 'fp32'


def precision_problem(optim_wrapper: dict, cuda: bool,
                      cuda_bf16: bool = True) -> Optional[str]:
    """What of the optimiser wrapper config's precision cannot be had on this
    machine (``cuda``: a CUDA device is used; ``cuda_bf16``: it supports bfloat16),
    as one sentence; None when it can."""
    kind = str(optim_wrapper.get('type', 'OptimWrapper')).split('.')[-1]
    if kind == 'AmpOptimWrapper':
        dtype = str(optim_wrapper.get('dtype') or 'float16')
        if not cuda:
            fix = ('BF16OptimWrapper (tools/train.py --amp bf16)' if 'bfloat16' in dtype
                   else 'tools/train.py --amp bf16 (BF16OptimWrapper) or drop --amp')
            return (f'AmpOptimWrapper ({dtype} autocast with loss scaling) needs CUDA '
                    f'and none is available here; use {fix}')
    if precision_of(optim_wrapper) == 'bf16' and cuda and not cuda_bf16:
        return (f'{kind}: this CUDA device does not support bfloat16; use '
                'AmpOptimWrapper in float16 (tools/train.py --amp fp16)')
    return None


def set_mixed_precision(cfg, precision: str) -> str:
    """``--amp PRECISION``: the config's plain ``OptimWrapper`` becomes the wrapper
    of ``precision`` (:data:`AMP_WRAPPERS`; fp16 gets dynamic loss scaling). Returns
    what was done, as a sentence; raises ValueError (one line) for a config whose
    wrapper cannot be converted."""
    wanted = AMP_WRAPPERS[precision]
    optim_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if precision_of(cfg.optim_wrapper) == precision:
        return f'--amp {precision}: the config already trains in {precision} ({optim_type}).'
    if str(optim_type).split('.')[-1] != 'OptimWrapper':
        raise ValueError(f'--amp {precision} turns optim_wrapper.type OptimWrapper into '
                         f'{wanted} and cannot convert {optim_type}')
    cfg.optim_wrapper.type = wanted
    if precision == 'fp16':
        cfg.optim_wrapper.loss_scale = 'dynamic'
    return f'--amp {precision}: optim_wrapper.type = {wanted}'


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

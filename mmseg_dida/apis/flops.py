"""FLOP counting for benchmarks: torch's ``FlopCounterMode`` with grouped convolutions
counted right in backward.

torch 2.14's formula for ``aten.convolution_backward`` computes the weight gradient's
cost as an ungrouped convolution, i.e. ``groups`` times too high (pytorch/pytorch PR
183405 discusses the fix). For the depthwise 3x3 convolutions of MiT's Mix-FFN
(groups = channels, up to 2048 in MiT-B5) that multiplies the backward count by the
channel count and dominates the total. :func:`flop_counter` replaces the formula with
the exact one below; everything else is torch's.
"""
from math import prod
from typing import Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ['conv_flops', 'conv_backward_flops', 'flop_counter']


def conv_flops(x_shape: Sequence[int], w_shape: Sequence[int],
               out_shape: Sequence[int], transposed: bool = False) -> int:
    """2 x the multiply-adds of a (grouped) convolution's forward pass.

    The weight of a convolution is (C_out, C_in / groups, *k) and every output
    element of every sample is a dot product of length (C_in / groups) * prod(k):
    2 * N * prod(out spatial) * prod(w_shape). A transposed convolution's weight is
    (C_in, C_out / groups, *k) and every *input* element is scattered through it:
    2 * N * prod(in spatial) * prod(w_shape)."""
    spatial = (x_shape if transposed else out_shape)[2:]
    return 2 * x_shape[0] * prod(spatial) * prod(w_shape)


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding,
                        _dilation, transposed, _output_padding, _groups, output_mask,
                        out_shape=None, **kwargs) -> int:
    """``aten.convolution_backward``: the input gradient and the weight gradient are
    each made of exactly the forward pass's products (every product x_i * w_j of
    the forward appears once in each, multiplied by the output gradient), so each
    requested one costs one forward."""
    fwd = conv_flops(x_shape, w_shape, grad_out_shape, transposed)
    return fwd * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def flop_counter(**kwargs) -> FlopCounterMode:
    """A ``FlopCounterMode`` (same arguments) with :func:`conv_backward_flops`."""
    mapping = dict(kwargs.pop('custom_mapping', None) or {})
    mapping.setdefault(torch.ops.aten.convolution_backward, conv_backward_flops)
    kwargs.setdefault('display', False)
    return FlopCounterMode(custom_mapping=mapping, **kwargs)

"""Pixel accuracy of segmentation logits, computed on the device.

mmseg's ``accuracy`` selects the labelled pixels with a boolean mask and counts them
with ``numel()``, which on a GPU makes the host wait for the device at every loss
(twice per head, several heads per UDA step). This one masks by multiplication, so the
host never waits; it returns what mmseg's returns for top-1 (percent, shape (1,), with
mmseg's epsilon in numerator and denominator).
"""
import torch
from torch import Tensor

__all__ = ['seg_accuracy']


def seg_accuracy(logits: Tensor, labels: Tensor, ignore_index: int = 255) -> Tensor:
    """Top-1 accuracy in percent of ``logits`` (N, C, ...) against ``labels`` (N, ...)
    over the pixels whose label is not ``ignore_index``; shape (1,)."""
    if logits.shape[0] != labels.shape[0] or logits.shape[2:] != labels.shape[1:]:
        raise ValueError(f'seg_accuracy: logits {tuple(logits.shape)} do not match '
                         f'labels {tuple(labels.shape)}')
    valid = labels != ignore_index
    correct = (logits.argmax(dim=1) == labels) & valid
    eps = torch.finfo(torch.float32).eps
    total = valid.sum(dtype=torch.float32) + eps
    return ((correct.sum(dtype=torch.float32) + eps) * (100.0 / total)).reshape(1)

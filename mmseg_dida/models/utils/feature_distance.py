"""ImageNet feature distance (DAFormer, Hoyer et al., CVPR 2022, Eq. 5-6).

    L_FD = lambda_FD * sum_j ||F_theta(x^S)_j - F_ImageNet(x^S)_j||_2 * M_j / sum_j M_j

over the pixels j of the last backbone stage, masked to the pixels whose label (downscaled
to that stage by a majority vote that must reach ``min_ratio``) is a "thing" class.
"""
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['downscale_label_ratio', 'thing_class_mask', 'masked_feat_dist']


def downscale_label_ratio(gt: Tensor, scale_factor: int, min_ratio: float,
                          num_classes: int, ignore_index: int = 255) -> Tensor:
    """Downscale a label map by ``scale_factor`` with a majority vote.

    Each output pixel takes the most frequent label of its ``scale_factor`` x
    ``scale_factor`` block (ignore counted as a class of its own); it becomes
    ``ignore_index`` if that label covers less than ``min_ratio`` of the block.

    Args:
        gt: (N, 1, H, W) integer labels. Returns (N, 1, H // s, W // s) long.
    """
    if gt.dim() != 4 or gt.shape[1] != 1:
        raise ValueError(f'downscale_label_ratio: gt must be (N, 1, H, W), got '
                         f'{tuple(gt.shape)}')
    # torch.where and a device-side assert instead of boolean indexing and min()/max()
    # reads: nothing here makes the host wait for a GPU (tests/helpers/host_sync.py)
    labels = gt[:, 0].long()
    labels = torch.where(labels == ignore_index, num_classes, labels)
    torch._assert_async(((labels >= 0) & (labels <= num_classes)).all(),
                        'downscale_label_ratio: labels outside [0, num_classes) and '
                        f'not ignore_index={ignore_index}')
    onehot = labels.new_zeros((labels.shape[0], num_classes + 1, *labels.shape[1:]),
                              dtype=torch.float32).scatter_(1, labels.unsqueeze(1), 1.0)
    ratio, out = F.avg_pool2d(onehot, kernel_size=scale_factor).max(dim=1, keepdim=True)
    out = torch.where((out == num_classes) | (ratio < min_ratio), ignore_index, out)
    return out


def thing_class_mask(gt: Tensor, feat_size: Sequence[int], classes: Sequence[int],
                     min_ratio: float, num_classes: int,
                     ignore_index: int = 255) -> Tensor:
    """(N, H', W') bool mask of feature pixels whose downscaled label is in ``classes``."""
    scale = gt.shape[-1] // feat_size[-1]
    small = downscale_label_ratio(gt, scale, min_ratio, num_classes, ignore_index)
    small = small[..., :feat_size[-2], :feat_size[-1]]
    small = small[:, 0]
    mask = torch.zeros_like(small, dtype=torch.bool)
    for c in classes:  # comparisons, not a tensor of the classes copied to the device
        mask |= small == int(c)
    return mask


def masked_feat_dist(feat: Tensor, feat_ref: Tensor, mask: Optional[Tensor] = None,
                     denominator: Union[None, float, Tensor] = None) -> Tensor:
    """Mean over (masked) pixels of the L2 distance across channels of two (N, C, H, W)
    feature maps. ``denominator`` (a number or a 0-d tensor) replaces the local count
    of selected pixels (used to make a distributed mean exact). With no selected pixel
    the result is 0 (kept in the graph), where the original DAFormer code would give
    NaN. The mask multiplies instead of selecting, so the host never waits for the
    count on a GPU."""
    dist = torch.norm(feat.float() - feat_ref.float(), p=2, dim=1)  # fp32 under AMP
    if mask is not None:
        dist = torch.where(mask, dist, dist.new_zeros(()))
        count = mask.sum()
    else:
        count = dist.numel()
    if denominator is not None:
        count = denominator
    if not isinstance(count, Tensor):
        count = dist.new_full((), float(count))
    # count is 0 only with no selected pixel, where the sum is 0 too
    return dist.sum() / count.to(dist.dtype).clamp(min=1e-12)

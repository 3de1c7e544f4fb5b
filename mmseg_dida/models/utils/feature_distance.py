"""ImageNet feature distance (DAFormer, Hoyer et al., CVPR 2022, Eq. 5-6).

    L_FD = lambda_FD * sum_j ||F_theta(x^S)_j - F_ImageNet(x^S)_j||_2 * M_j / sum_j M_j

over the pixels j of the last backbone stage, masked to the pixels whose label (downscaled
to that stage by a majority vote that must reach ``min_ratio``) is a "thing" class.
"""
from typing import Optional, Sequence

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
    labels = gt[:, 0].long().clone()
    labels[labels == ignore_index] = num_classes
    if labels.min() < 0 or labels.max() > num_classes:
        raise ValueError('downscale_label_ratio: labels outside [0, num_classes) and '
                         f'not ignore_index={ignore_index}')
    onehot = F.one_hot(labels, num_classes + 1).permute(0, 3, 1, 2).float()
    ratio, out = F.avg_pool2d(onehot, kernel_size=scale_factor).max(dim=1, keepdim=True)
    out[out == num_classes] = ignore_index
    out[ratio < min_ratio] = ignore_index
    return out


def thing_class_mask(gt: Tensor, feat_size: Sequence[int], classes: Sequence[int],
                     min_ratio: float, num_classes: int,
                     ignore_index: int = 255) -> Tensor:
    """(N, H', W') bool mask of feature pixels whose downscaled label is in ``classes``."""
    scale = gt.shape[-1] // feat_size[-1]
    small = downscale_label_ratio(gt, scale, min_ratio, num_classes, ignore_index)
    small = small[..., :feat_size[-2], :feat_size[-1]]
    return torch.isin(small[:, 0], torch.as_tensor(list(classes), device=gt.device))


def masked_feat_dist(feat: Tensor, feat_ref: Tensor, mask: Optional[Tensor] = None,
                     denominator: Optional[float] = None) -> Tensor:
    """Mean over (masked) pixels of the L2 distance across channels of two (N, C, H, W)
    feature maps. ``denominator`` replaces the local count of selected pixels (used to
    make a distributed mean exact). With no selected pixel the result is 0 (kept in the
    graph), where the original DAFormer code would give NaN."""
    dist = torch.norm(feat.float() - feat_ref.float(), p=2, dim=1)  # fp32 under AMP
    if mask is not None:
        dist = dist[mask]
    count = float(dist.numel()) if denominator is None else float(denominator)
    if count == 0:
        return dist.sum() * 0.0
    return dist.sum() / count

"""ClassMix (Olsson et al., WACV 2021) as used by DACS/DAFormer for the mixed target batch.

Every mixed image i takes, from source image i, the pixels of half of the classes present
in the source label batch and the rest from target image i::

    M_i = [y^S_i in C_i],    x^M_i = M_i x^S_i + (1 - M_i) x^T_i,
    y^M_i = M_i y^S_i + (1 - M_i) p^T_i,   w^M_i = M_i * 1 + (1 - M_i) q^T_i

where C_i is a random half (rounded up) of the classes of the *whole* source batch, the
ignore index 255 included (as in DACS: ``torch.unique`` over the batch).
"""
from typing import Optional

import torch
from torch import Tensor

__all__ = ['get_class_masks', 'class_mix']


def get_class_masks(labels: Tensor,
                    generator: Optional[torch.Generator] = None) -> Tensor:
    """ClassMix masks from a source label batch.

    Args:
        labels: Source labels, (N, H, W) or (N, 1, H, W), integer.
        generator: Optional torch generator for the class choice.

    Returns:
        Float masks (N, 1, H, W): 1 where the pixel's source class was chosen for image i.
    """
    if labels.dim() == 4:
        if labels.shape[1] != 1:
            raise ValueError('get_class_masks: labels must be (N, H, W) or (N, 1, H, W), '
                             f'got {tuple(labels.shape)}')
        labels = labels[:, 0]
    # The classes present in the batch (as the original: the whole batch's, the ignore
    # label included) as a (256,) mask on the device; per image, ceil(n / 2) of the n
    # present classes uniformly at random: those with the smallest of 256 uniform keys
    # drawn on the host. Nothing waits for a GPU (torch.unique and randperm(n) would:
    # n is a device value).
    slots = 256
    index = labels.long()
    torch._assert_async(((index >= 0) & (index < slots)).all(),
                        f'get_class_masks: labels outside [0, {slots})')
    present = torch.zeros(slots, dtype=torch.bool, device=labels.device)
    present = present.scatter(0, index.flatten(), True)
    n_pick = (present.sum() + 1) // 2
    generator = torch.default_generator if generator is None else generator
    keys = torch.rand((labels.shape[0], slots), generator=generator).to(
        labels.device, non_blocking=True)
    keys = torch.where(present, keys, 2.0)  # absent classes sort last
    rank = keys.argsort(dim=1).argsort(dim=1)
    picked = present & (rank < n_pick)  # (N, 256)
    masks = torch.gather(picked, 1, index.flatten(1)).view_as(index)
    return masks.unsqueeze(1).float()


def class_mix(mask: Tensor, source: Tensor, target: Tensor) -> Tensor:
    """``mask * source + (1 - mask) * target`` with ``mask`` (N, 1, H, W) broadcast to
    images (N, C, H, W), label maps (N, H, W) or (N, 1, H, W) and weight maps alike.

    Integer inputs are mixed by selection and keep their dtype.
    """
    m = mask.bool()
    if source.dim() == 3:
        m = m[:, 0]
    if source.shape[-2:] != m.shape[-2:] or source.shape != target.shape:
        raise ValueError(f'class_mix: mask {tuple(mask.shape)}, source '
                         f'{tuple(source.shape)} and target {tuple(target.shape)} '
                         'do not match')
    return torch.where(m, source, target)

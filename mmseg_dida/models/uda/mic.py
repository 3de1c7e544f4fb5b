"""MIC as a plug-in of the self-training step (Hoyer et al., "MIC: Masked Image
Consistency for Context-Enhanced Domain Adaptation", CVPR 2023, Sec. 3.2).

The target image, colour-jittered and blurred with draws of its own, is masked by
random blocks (:func:`block_mask`, ratio r of the blocks dropped), and the student must
predict from the remaining context what the EMA teacher predicted on the whole clean
image:

    L_M = q^T * CE(f(M * aug(x^T)), p^T)        (Eq. 6-7; weighted by lambda_M)

with the step's pseudo labels p^T and their confidence weight q^T (with the host's
pseudo-label margins zeroed, as for L_T). CE is the student's own supervised loss
(HRDA: its weighted fused + detail-crop losses). By default the masked pass updates the
student's normalisation statistics like every training pass of MIC; with
``update_norm_stats=False`` (a variant) it uses batch statistics but leaves the running
ones, which inference uses, as the clean passes left them (``preserves_norm_buffers``).
DACS never imports this module: MIC joins a config as a plug-in.
"""
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dist import get_rank
from mmseg.registry import MODELS
from torch import Tensor

from ..losses.loss_keys import is_loss_key
from ..segmentors.uda_segmentor import as_uda_segmentor
from ..utils.strong_transforms import StrongAugmentation, normalisation_of
from .plugin import BaseUDAPlugin, UDAStepContext

__all__ = ['MIC', 'block_mask']

IMAGES = ('target', 'source', 'source_and_target')


def block_mask(shape: Tuple[int, int, int], ratio: float, block_size: int,
               generator: Optional[torch.Generator] = None,
               device=None) -> Tensor:
    """MIC's random block mask, (N, 1, H, W) float of 0 (masked) and 1 (kept): a grid
    of round(H / b) x round(W / b) cells, each kept when U(0, 1) > ``ratio``,
    upsampled to (H, W) by nearest neighbour (exact b x b blocks when b divides H and
    W)."""
    n, h, w = shape
    if not 0 <= ratio < 1:
        raise ValueError(f'block_mask: ratio must be in [0, 1), got {ratio}')
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f'block_mask: block_size must be an int >= 1, got {block_size!r}')
    grid = (n, 1, max(round(h / block_size), 1), max(round(w / block_size), 1))
    gen_device = generator.device if generator is not None else device
    keep = torch.rand(grid, generator=generator, device=gen_device) > ratio
    return F.interpolate(keep.float().to(device, non_blocking=True), size=(h, w),
                         mode='nearest')


@MODELS.register_module()
class MIC(BaseUDAPlugin):
    """Masked image consistency.

    Args:
        mask_ratio: Fraction r of blocks masked (MIC 0.7).
        mask_block_size: Block side b in pixels (MIC 64 at HRDA's 1024 crops, 32 at
            DAFormer's 512).
        loss_weight: lambda_M (MIC 1).
        images: Which images are masked: 'target' (MIC's GTA/SYNTHIA->CS,
            ``separatetrg``), 'source' (with labels, ``separatesrc``) or
            'source_and_target' (the first half of the batch's source images with
            labels and the first half of its target images with pseudo labels;
            MIC's CS->ACDC ``separate``).
        color_augmentation: Colour jitter and blur of the images before masking with
            draws of the plug-in's own (MIC: on for GTA/SYNTHIA->CS, ``...aug``; off
            for CS->ACDC).
        color_jitter_strength, color_jitter_probability, blur: As DACS's strong
            augmentation (0.2, 0.2, on).
        seed: Seed of the plug-in's own generator (augmentation and mask draws), so
            that switching MIC on does not change the random stream of the rest of
            the step. None: derived from the process's torch seed and rank.
        update_norm_stats: True (MIC): the masked pass updates the student's
            normalisation running statistics. False (*variant*): the host restores
            them after the masked pass, so masked images never shape the
            statistics inference uses (as DiDA's degraded passes).
    """

    def __init__(self, mask_ratio: float = 0.7, mask_block_size: int = 64,
                 loss_weight: float = 1.0, images: str = 'target',
                 color_augmentation: bool = True, color_jitter_strength: float = 0.2,
                 color_jitter_probability: float = 0.2, blur: bool = True,
                 seed: Optional[int] = None, update_norm_stats: bool = True,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if not 0 <= mask_ratio < 1:
            raise ValueError(f'MIC: mask_ratio must be in [0, 1), got {mask_ratio}')
        if not isinstance(mask_block_size, int) or mask_block_size < 1:
            raise ValueError('MIC: mask_block_size must be an int >= 1, got '
                             f'{mask_block_size!r}')
        if not isinstance(loss_weight, (int, float)) or loss_weight <= 0:
            raise ValueError(f'MIC: loss_weight (lambda_M) must be > 0, got '
                             f'{loss_weight!r}; remove the plug-in to switch MIC off')
        if images not in IMAGES:
            raise ValueError(f'MIC: images must be one of {list(IMAGES)}, got '
                             f'{images!r}')
        self.mask_ratio = float(mask_ratio)
        self.mask_block_size = mask_block_size
        self.loss_weight = float(loss_weight)
        self.images = images
        self.augment = (StrongAugmentation(color_jitter_strength,
                                           color_jitter_probability, blur)
                        if color_augmentation else None)
        if not isinstance(update_norm_stats, bool):
            raise ValueError('MIC: update_norm_stats must be True or False, got '
                             f'{update_norm_stats!r}')
        self.preserves_norm_buffers = not update_norm_stats
        self.seed = seed
        self._generator: Optional[torch.Generator] = None

    def generator(self) -> torch.Generator:
        """The plug-in's own generator (CPU; seeded at the first draw)."""
        if self._generator is None:
            seed = self.seed
            if seed is None:
                seed = int(np.random.SeedSequence(
                    [torch.initial_seed() % 2**63, get_rank(), 0x313C]
                ).generate_state(1, np.uint64)[0] % 2**63)
            self._generator = torch.Generator().manual_seed(seed)
        return self._generator

    def rng_state(self) -> Optional[Tensor]:
        """State of the plug-in's generator (None before the first draw); saved in
        checkpoints so that a resumed run draws the same masks
        (:mod:`mmseg_dida.engine.resume.state`)."""
        return None if self._generator is None else self._generator.get_state()

    def set_rng_state(self, state: Optional[Tensor], device=None) -> None:
        """Restore a state from :meth:`rng_state` (None: start afresh). The
        generator lives on the CPU whatever ``device`` is."""
        if state is None:
            self._generator = None
            return
        self.generator().set_state(state.cpu())

    def masked_batch(self, ctx: UDAStepContext
                     ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """(images, labels (N, H, W), per-pixel weights or None) of the masked pass,
        before augmentation and masking."""
        src_labels = ctx.src_labels
        images = 'source' if ctx.pseudo_label is None else self.images
        if images == 'source':  # also a source-only host: no pseudo labels
            return ctx.src_inputs, src_labels, None
        weight = ctx.pseudo_weight_masked
        if weight is None:
            weight = ctx.pseudo_weight
        if images == 'target':
            return ctx.tgt_inputs, ctx.pseudo_label, weight
        n = ctx.src_inputs.shape[0]
        k = n // 2 if n > 1 else 1
        rest = n - k if n > 1 else 1
        imgs = torch.cat([ctx.src_inputs[:k], ctx.tgt_inputs[:rest]])
        labels = torch.cat([src_labels[:k].to(ctx.pseudo_label), ctx.pseudo_label[:rest]])
        weights = torch.cat([torch.ones_like(weight[:k]), weight[:rest]])
        return imgs, labels, weights

    def masked_images(self, images: Tensor, mean: Tensor, std: Tensor,
                      vis_images: Optional[Dict[str, Tensor]] = None) -> Tensor:
        """aug(x) * M with the plug-in's generator (normalised images in and out).
        When a visualisation hook asked for this step's pictures (``vis_images`` not
        None), the mask and the masked image are added as ``mic_mask`` and
        ``mic_img``."""
        gen = self.generator()
        if self.augment is not None:
            images = self.augment(images, mean, std, generator=gen)
        mask = block_mask((images.shape[0], *images.shape[-2:]), self.mask_ratio,
                          self.mask_block_size, generator=gen, device=images.device)
        masked = images * mask
        if vis_images is not None:
            vis_images['mic_mask'] = mask[:, 0].detach()
            vis_images['mic_img'] = masked.detach()
        return masked

    def losses(self, ctx: UDAStepContext) -> Dict[str, Tensor]:
        """The student's supervised losses of the masked batch x lambda_M (keys
        ``masked.*``; the accuracies logged unweighted)."""
        images, labels, weight = self.masked_batch(ctx)
        mean, std = normalisation_of(ctx.student.data_preprocessor)
        masked = self.masked_images(images, mean, std, ctx.vis_images)
        losses, _ = as_uda_segmentor(ctx.student).uda_forward_loss(masked, labels, weight)
        return {f'masked.{k}': (v * self.loss_weight if is_loss_key(k) else v)
                for k, v in losses.items()}

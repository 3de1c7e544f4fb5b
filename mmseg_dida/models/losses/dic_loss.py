"""DiDA's degraded image consistency loss L_D (arXiv 2412.10339, Sec. 3.3, Eq. 6):

    L_D = sum_i CE(h((g + g')(x^S_(i,t))), y^S_i)
        + sum_i CE(h((g + g')(x^T_(i,t))), p^T_i, q^T)

the segmentation head h on the fused features of degraded source images against their
labels, and of degraded target images against the EMA teacher's pseudo labels p^T
weighted per pixel by its confidence q^T. Each domain's term is a mean over all pixels
(ignored pixels, label 255, count as 0), exactly as the self-training losses L_S and
L_T, and is scaled by lambda_D (``loss_weight``, paper: 0.5).

CE is the student's own supervised loss when the caller passes it (a callable: the
segmentor contract's loss, e.g. HRDA's weighted fused + detail-crop loss), else the
plain per-pixel cross-entropy of the logits of h (:func:`weighted_cross_entropy`).
"""
from typing import Callable, Dict, Optional, Union

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor, nn

__all__ = ['weighted_cross_entropy', 'DICLoss']

# seg_loss(index, labels (n, H, W), weight (n, H, W) or None) -> loss of images index
SegLoss = Callable[[slice, Tensor, Optional[Tensor]], Tensor]


def weighted_cross_entropy(logits: Tensor, label: Tensor,
                           weight: Optional[Tensor] = None,
                           ignore_index: int = 255) -> Tensor:
    """1/(N H W) sum w * CE over all pixels; pixels labelled ``ignore_index`` add 0.

    Args:
        logits: (N, C, H, W) at the labels' resolution.
        label: (N, H, W) long.
        weight: (N, H, W) per-pixel weights or None (all 1).
    """
    ce = F.cross_entropy(logits.float(), label, reduction='none',
                         ignore_index=ignore_index)
    if weight is not None:
        ce = ce * weight.to(ce.dtype)
    return ce.mean()


@MODELS.register_module()
class DICLoss(nn.Module):
    """L_D of DiDA on a batch holding ``num_src`` degraded source images followed by
    degraded target images.

    Args:
        loss_weight: lambda_D, required (its default, the paper's 0.5, is
            :class:`~mmseg_dida.models.uda.DiDA`'s ``lambda_d``).
        ignore_index: Label of ignored pixels (255).
        align_corners: For resizing logits to the labels' size.
    """

    def __init__(self, *, loss_weight: float, ignore_index: int = 255,
                 align_corners: bool = False):
        super().__init__()
        if loss_weight < 0:
            raise ValueError(f'DICLoss: loss_weight (lambda_D) must be >= 0, '
                             f'got {loss_weight}')
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index
        self.align_corners = align_corners

    def forward(self, seg_logits: Union[Tensor, SegLoss], labels: Tensor, num_src: int,
                tgt_weight: Optional[Tensor] = None,
                image_weight: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Return ``loss_dic_src`` (when ``num_src`` > 0) and ``loss_dic_tgt`` (when
        the batch has target images), each already x lambda_D.

        Args:
            seg_logits: (N_s + N_t, C, h, w) logits of h on the degraded batch, or
                the student's supervised loss ``seg_loss(index, labels, weight)`` of
                the images ``index`` (a slice) of the degraded batch.
            labels: (N_s + N_t, H, W) long: source labels, then pseudo labels.
            num_src: N_s.
            tgt_weight: (N_t, H, W) confidence q^T of the pseudo labels, or None.
            image_weight: (N_s + N_t,) a weight per degraded image (e.g. by its t),
                multiplying its pixels' terms; None: 1 (the paper).
        """
        if labels.dim() == 4:
            labels = labels.squeeze(1)
        seg_loss = None if isinstance(seg_logits, Tensor) else seg_logits
        if seg_loss is not None and not callable(seg_loss):
            raise TypeError('DICLoss: seg_logits must be logits or a loss callable, '
                            f'got {type(seg_logits).__name__}')
        if seg_loss is None and seg_logits.shape[0] != labels.shape[0]:
            raise ValueError(f'DICLoss: {seg_logits.shape[0]} logits for '
                             f'{labels.shape[0]} labels')
        if seg_loss is None and seg_logits.shape[-2:] != labels.shape[-2:]:
            seg_logits = F.interpolate(  # float32: not in autocast's bf16/fp16
                seg_logits.float(), size=labels.shape[-2:], mode='bilinear',
                align_corners=self.align_corners)
        if not 0 <= num_src <= labels.shape[0] or labels.shape[0] == 0:
            raise ValueError(f'DICLoss: num_src={num_src} for a batch of '
                             f'{labels.shape[0]} images')
        labels = labels.long()
        n = labels.shape[0]
        weight = None
        if tgt_weight is not None or image_weight is not None:
            weight = labels.new_ones(labels.shape, dtype=torch.float32)
            if tgt_weight is not None:
                weight[num_src:] = tgt_weight.to(weight)
            if image_weight is not None:
                if image_weight.shape != (n, ):
                    raise ValueError(f'DICLoss: image_weight must be ({n},), got '
                                     f'{tuple(image_weight.shape)}')
                weight = weight * image_weight.to(weight).view(n, 1, 1)

        def term(index: slice) -> Tensor:
            part_weight = None if weight is None else weight[index]
            if seg_loss is not None:
                return seg_loss(index, labels[index], part_weight)
            return weighted_cross_entropy(seg_logits[index], labels[index],
                                          part_weight, self.ignore_index)

        losses = {}
        if num_src > 0:
            losses['loss_dic_src'] = self.loss_weight * term(slice(0, num_src))
        if n > num_src:
            losses['loss_dic_tgt'] = self.loss_weight * term(slice(num_src, n))
        return losses

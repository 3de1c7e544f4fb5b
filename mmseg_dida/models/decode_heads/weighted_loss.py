"""Per-pixel weighted segmentation loss for decode heads (pseudo-label confidence).

Self-training (DACS, DAFormer Sec. 3.2; used by HRDA, MIC and DiDA's DIC loss) trains
the student on pseudo labels weighted per pixel by the teacher's confidence q^T:

    L = 1 / (N H W) * sum_{n, i, j} q_{nij} * CE(p_{nij}, y_{nij}),

where pixels with label 255 contribute 0 but still count in N H W. This is what the
original DAFormer computes (``cross_entropy(reduction='none') * weight`` followed by a
mean over all pixels, i.e. mmseg's ``avg_non_ignore=False``), and mmseg 1.x's
``CrossEntropyLoss`` does the same when it is given ``weight`` and
``avg_non_ignore=False`` (its default).

mmseg 1.x's ``BaseDecodeHead.loss_by_feat`` has no way to receive such a weight. The
mixin below reads it from the data samples: a sample may carry ``seg_weight``
(``PixelData`` whose ``data`` is a (1, H, W) float tensor aligned with ``gt_sem_seg``).
Samples without it get weight 1; a batch where no sample has it is exactly mmseg's
unweighted loss.

Use: ``class MyHead(SegWeightLossMixin, BaseDecodeHead)`` (the mixin must come first).
Heads that build their own labels (e.g. HRDA crops) call :meth:`weighted_loss_by_label`.
"""
from typing import List, Optional

import torch
from mmseg.models.decode_heads.segformer_head import SegformerHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from torch import Tensor, nn

from ..losses.accuracy import seg_accuracy

__all__ = ['SegWeightLossMixin', 'WeightedSegformerHead', 'stack_seg_weight']


def stack_seg_weight(batch_data_samples: List, seg_label: Tensor) -> Optional[Tensor]:
    """Stack the samples' ``seg_weight`` into an (N, H, W) float tensor.

    Args:
        batch_data_samples: ``SegDataSample`` list, some of which may carry
            ``seg_weight`` (PixelData, data (1, H, W)).
        seg_label: The stacked labels, (N, 1, H, W); gives shape, device and the
            sample count.

    Returns:
        None when no sample carries ``seg_weight``; otherwise (N, H, W) float weights,
        1 for samples without one.
    """
    if not any('seg_weight' in s for s in batch_data_samples):
        return None
    n, _, h, w = seg_label.shape
    weights = seg_label.new_ones((n, h, w), dtype=torch.float32)
    for i, sample in enumerate(batch_data_samples):
        if 'seg_weight' not in sample:
            continue
        data = sample.seg_weight.data
        if data.dim() == 2:
            data = data[None]
        if tuple(data.shape) != (1, h, w):
            raise ValueError(
                f'SegWeightLossMixin: data sample {i} has seg_weight of shape '
                f'{tuple(sample.seg_weight.data.shape)}, but its gt_sem_seg is '
                f'(1, {h}, {w}); the weight must be per label pixel.')
        weights[i] = data[0].to(device=weights.device, dtype=torch.float32)
    return weights


class SegWeightLossMixin:
    """Adds the per-pixel ``seg_weight`` of data samples to a ``BaseDecodeHead`` loss.

    Overrides ``loss_by_feat``; everything else (``loss``, ``predict``, samplers,
    several ``loss_decode``) stays as in mmseg. The loss key stays mmseg's
    (``loss_ce`` for ``CrossEntropyLoss``), plus ``acc_seg``.
    """

    def loss_by_feat(self, seg_logits: Tensor, batch_data_samples: List) -> dict:
        seg_label = self._stack_batch_gt(batch_data_samples)
        seg_weight = stack_seg_weight(batch_data_samples, seg_label)
        return self.weighted_loss_by_label(seg_logits, seg_label, seg_weight)

    def weighted_loss_by_label(self,
                               seg_logits: Tensor,
                               seg_label: Tensor,
                               seg_weight: Optional[Tensor] = None) -> dict:
        """Loss of ``seg_logits`` against ``seg_label`` (N, 1, H, W) with optional
        per-pixel ``seg_weight`` (N, H, W); logits are resized to the label size."""
        if seg_label.dim() != 4 or seg_label.shape[1] != 1:
            raise ValueError(f'{type(self).__name__}: seg_label must be (N, 1, H, W), '
                             f'got {tuple(seg_label.shape)}')
        # float32 from here: under autocast the resize would run in bf16/fp16, and
        # on the CPU a loss_decode's own softmax or log_softmax in bf16.
        seg_logits = resize(
            input=seg_logits.float(),
            size=seg_label.shape[2:],
            mode='bilinear',
            align_corners=self.align_corners)
        if self.sampler is not None:
            sampled = self.sampler.sample(seg_logits, seg_label).float()
            seg_weight = sampled if seg_weight is None else sampled * seg_weight
        if seg_weight is not None and seg_weight.shape != seg_label[:, 0].shape:
            raise ValueError(f'{type(self).__name__}: seg_weight must be (N, H, W) = '
                             f'{tuple(seg_label[:, 0].shape)}, got '
                             f'{tuple(seg_weight.shape)}')
        seg_label = seg_label.squeeze(1)
        losses_decode = self.loss_decode
        if not isinstance(losses_decode, nn.ModuleList):
            losses_decode = [losses_decode]
        loss = dict()
        for loss_decode in losses_decode:
            value = loss_decode(
                seg_logits, seg_label, weight=seg_weight,
                ignore_index=self.ignore_index)
            name = loss_decode.loss_name
            loss[name] = loss[name] + value if name in loss else value
        loss['acc_seg'] = seg_accuracy(
            seg_logits, seg_label, ignore_index=self.ignore_index)
        return loss


@MODELS.register_module()
class WeightedSegformerHead(SegWeightLossMixin, SegformerHead):
    """mmseg's ``SegformerHead`` (Xie et al., NeurIPS 2021) with the per-pixel
    ``seg_weight`` loss, e.g. for the procedural benchmark's small model.

    Its forward is mmseg's, split into per-level embeddings (:meth:`embed_levels`),
    the fusion (:attr:`fusion_layer`) and the classifier, so that a degraded
    segmentation path can reuse the embeddings with a fusion of its own
    (:class:`~mmseg_dida.models.decode_heads.TimeConditionedSegPath`)."""

    @property
    def level_embed_channels(self) -> List[int]:
        return [self.channels] * len(self.convs)

    @property
    def fusion_layer(self) -> nn.Module:
        return self.fusion_conv

    def embed_levels(self, inputs) -> List[Tensor]:
        """Every level through its 1x1 conv module, resized to the first level."""
        inputs = self._transform_inputs(inputs)
        size = inputs[0].shape[2:]
        return [resize(input=conv(x), size=size, mode=self.interpolate_mode,
                       align_corners=self.align_corners)
                for conv, x in zip(self.convs, inputs)]

    def forward(self, inputs) -> Tensor:
        return self.cls_seg(self.fusion_conv(torch.cat(self.embed_levels(inputs), 1)))

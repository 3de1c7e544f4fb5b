"""HRDA's multi-resolution decode head (Hoyer et al., "HRDA: Context-Aware
High-Resolution Domain-Adaptive Semantic Segmentation", ECCV 2022, Sec. 3.2-3.3).

A single-scale head h (DAFormer's or DeepLabV2's) segments a low-resolution context
view of the whole image (LR, scale 0.5) and high-resolution detail windows (HR,
scale 1); a scale attention head h_A, run on the LR features, decides per pixel (and
per class) how much the HR prediction counts:

    a_c     = sigmoid(h_A(f_LR)) * M                 (M: 1 where an HR window lies)
    y_fused = up((1 - a_c) * y_LR) + up(a_c) * y_HR  (up: bilinear to HR output size)

In training there is one random HR detail crop, so outside it the fused prediction is
the upsampled LR one; at inference overlapping HR windows cover the image (their
logits averaged) and M = 1. The training loss, with w_hr = ``hr_loss_weight`` (the
HRDA paper's detail-loss weight, unrelated to DiDA's lambda_D) and w_lr =
``lr_loss_weight``:

    L = (1 - w_hr - w_lr) CE(y_fused, y) + w_hr CE(y_HR, crop(y)) + w_lr CE(y_LR, y)

each CE with the same per-pixel weights (pseudo-label confidence) as the labels.

Two details differ from the original code (lhoyer/HRDA), both outside the paper's
configs' effect: the LR loss (``lr_loss_weight``, 0 in every HRDA config) reads the LR
logits themselves, not (1 - a_c) * y_LR; the output stride is read from the logits'
shapes instead of being fixed per head type, and a crop that does not fall on the
output grids is refused instead of being truncated.
"""
import copy
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import add_prefix
from torch import Tensor

from ..losses.loss_keys import is_loss_key
from .weighted_loss import SegWeightLossMixin, stack_seg_weight

__all__ = ['HRDAHead', 'MultiResFeatures', 'fuse_scales']

Box = Tuple[int, int, int, int]  # (y1, y2, x1, x2) in pixels, end exclusive
SCALE_LOSSES = ('fused', 'hr', 'lr')


@dataclass
class MultiResFeatures:
    """The input of :class:`HRDAHead`: backbone levels at two resolutions.

    Attributes:
        lr: Levels of the whole image at the LR scale, batch N.
        hr: Levels of the HR windows, window-major: window j of image i is entry
            j * N + i (batch k * N for k windows).
        hr_boxes: The k windows (y1, y2, x1, x2) in pixels of the HR-scale image.
        hr_size: (H, W) of the HR-scale image.
        scale_ratio: HR scale / LR scale (2 for HRDA's 1 and 0.5): the HR output
            grid is the LR output grid upsampled by this factor.
    """
    lr: List[Tensor]
    hr: List[Tensor]
    hr_boxes: List[Box]
    hr_size: Tuple[int, int]
    scale_ratio: float

    def select(self, index: slice) -> 'MultiResFeatures':
        """The features of images ``index`` (a training forward: one HR window)."""
        if len(self.hr_boxes) != 1:
            raise ValueError('MultiResFeatures.select: only features with one HR '
                             f'window can be sliced by image, got {len(self.hr_boxes)}')
        return replace(self, lr=[f[index] for f in self.lr],
                       hr=[f[index] for f in self.hr])


def fuse_scales(lr_seg: Tensor, att: Tensor, hr_seg: Tensor,
                align_corners: bool = False) -> Tensor:
    """HRDA's scale fusion up((1 - a) * y_LR) + up(a) * y_HR.

    Args:
        lr_seg: (N, C, h, w) LR logits.
        att: (N, C or 1, h, w) attention in [0, 1] at the LR output grid (already 0
            where no HR prediction exists).
        hr_seg: (N, C, H', W') HR logits on the HR output grid (0 where none).
    """
    size = hr_seg.shape[-2:]
    up_lr = resize((1 - att) * lr_seg, size=size, mode='bilinear',
                   align_corners=align_corners)
    up_att = resize(att, size=size, mode='bilinear', align_corners=align_corners)
    return up_att * hr_seg + up_lr


def _scaled_box(box: Box, image_size: Sequence[int], grid_size: Sequence[int],
                what: str) -> Box:
    """``box`` (pixels of an image of ``image_size``) on an output grid of
    ``grid_size`` covering the same image; every coordinate must fall on the grid."""
    (h, w), (gh, gw) = image_size, grid_size
    out = []
    for value, num, den in zip(box, (gh, gh, gw, gw), (h, h, w, w)):
        if (value * num) % den:
            raise ValueError(
                f'HRDAHead: {what} {tuple(box)} of a {h}x{w} image does not fall on '
                f'the {gh}x{gw} output grid; make crop_coord_divisible a multiple of '
                'the output stride / LR scale and the crop and image sizes multiples '
                'of the output stride')
        out.append(value * num // den)
    return tuple(out)


@MODELS.register_module()
class HRDAHead(SegWeightLossMixin, BaseDecodeHead):
    """HRDA head: a single-scale head for both resolutions and a scale attention head.

    Args:
        single_scale_head: Config of h, used for the LR context and the HR detail
            (DAFormerHead, DLV2Head, WeightedSegformerHead, ...). Its
            ``num_classes``, ``align_corners``, ``ignore_index`` and ``loss_decode``
            are this head's too.
        attention_classwise: One attention map per class (HRDA) or one for all.
        attention_embed_dim: For a DAFormerHead h: the attention head is a DAFormer
            head with this embedding width and a 1x1 conv fusion instead of the ASPP
            (HRDA: 256). Other heads: the attention head is h's config.
        hr_loss_weight: w_hr, weight of the HR detail crop's own loss (HRDA 0.1).
        lr_loss_weight: Weight of the LR prediction's own loss (HRDA 0; its region
            outside the crop is supervised through the fused prediction).
        init_cfg: Init config of the wrapper (the sub-heads keep their own).
    """

    def __init__(self, single_scale_head: dict, attention_classwise: bool = True,
                 attention_embed_dim: int = 256, hr_loss_weight: float = 0.1,
                 lr_loss_weight: float = 0.0, init_cfg=None):
        if not isinstance(single_scale_head, dict) or 'type' not in single_scale_head:
            raise TypeError('HRDAHead: single_scale_head must be a head config dict '
                            f'with a type, got {single_scale_head!r}')
        for name, value in (('hr_loss_weight', hr_loss_weight),
                            ('lr_loss_weight', lr_loss_weight)):
            if not 0 <= value <= 1:
                raise ValueError(f'HRDAHead: {name} must be in [0, 1], got {value}')
        if hr_loss_weight + lr_loss_weight > 1:
            raise ValueError('HRDAHead: hr_loss_weight + lr_loss_weight must be <= 1 '
                             f'(the fused loss weighs 1 minus both), got '
                             f'{hr_loss_weight} + {lr_loss_weight}')
        head_cfg = copy.deepcopy(dict(single_scale_head))
        in_channels = head_cfg.get('in_channels')
        multi = isinstance(in_channels, (list, tuple))
        base = dict(
            in_channels=list(in_channels) if multi else in_channels,
            in_index=list(head_cfg.get('in_index', range(len(in_channels))))
            if multi else head_cfg.get('in_index', -1),
            input_transform='multiple_select' if multi else None,
            channels=1, num_classes=head_cfg['num_classes'],
            align_corners=head_cfg.get('align_corners', False),
            ignore_index=head_cfg.get('ignore_index', 255),
            loss_decode=head_cfg.get('loss_decode', dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
        super().__init__(init_cfg=init_cfg, **base)
        # The wrapper itself has no classifier: its sub-heads have theirs.
        del self.conv_seg
        del self.dropout
        self.head = MODELS.build(head_cfg)
        attn_cfg = copy.deepcopy(head_cfg)
        if not attention_classwise:
            attn_cfg['num_classes'] = 1
        if attn_cfg['type'] == 'DAFormerHead':
            attn_cfg.update(channels=attention_embed_dim,
                            embed_dims=attention_embed_dim, fusion='conv')
            attn_cfg.pop('fusion_dilations', None)
        self.scale_attention = MODELS.build(attn_cfg)
        self.attention_classwise = attention_classwise
        self.hr_loss_weight = float(hr_loss_weight)
        self.lr_loss_weight = float(lr_loss_weight)

    # ------------------------------------------------------------------ forward
    def _check_inputs(self, inputs) -> MultiResFeatures:
        if not isinstance(inputs, MultiResFeatures):
            raise TypeError('HRDAHead: inputs must be MultiResFeatures (from '
                            f'HRDAEncoderDecoder), got {type(inputs).__name__}')
        return inputs

    def _hr_canvas(self, hr_seg: Tensor, inputs: MultiResFeatures, n: int,
                   size: Sequence[int]) -> Tuple[Tensor, Tensor]:
        """The HR windows' logits placed on the HR output grid ``size`` (averaged
        where windows overlap, 0 where there is none) and the count of windows per
        output pixel (N, 1, h, w)."""
        canvas = hr_seg.new_zeros((n, hr_seg.shape[1], *size))
        count = hr_seg.new_zeros((n, 1, *size))
        for j, box in enumerate(inputs.hr_boxes):
            y1, y2, x1, x2 = _scaled_box(box, inputs.hr_size, size, 'HR window')
            part = hr_seg[j * n:(j + 1) * n]
            if tuple(part.shape[-2:]) != (y2 - y1, x2 - x1):
                raise ValueError(f'HRDAHead: HR window {box} gives logits of size '
                                 f'{tuple(part.shape[-2:])}, expected '
                                 f'{(y2 - y1, x2 - x1)} on the HR output grid '
                                 f'{tuple(size)}')
            pad = (x1, size[1] - x2, y1, size[0] - y2)
            canvas = canvas + F.pad(part, pad)
            count[:, :, y1:y2, x1:x2] += 1
        if len(inputs.hr_boxes) > 1:
            canvas = canvas / count.clamp(min=1)
        return canvas, count

    @staticmethod
    def _windows_cover(inputs: MultiResFeatures, size: Sequence[int]) -> bool:
        """Whether the HR windows cover the whole HR output grid ``size``: decided
        from the boxes on the host (a device count would make the host wait)."""
        covered = np.zeros(tuple(size), dtype=bool)
        for box in inputs.hr_boxes:
            y1, y2, x1, x2 = _scaled_box(box, inputs.hr_size, size, 'HR window')
            covered[y1:y2, x1:x2] = True
        return bool(covered.all())

    def _lr_window_mask(self, inputs: MultiResFeatures, lr_seg: Tensor) -> Tensor:
        """1 on the LR output grid where an HR window lies, else 0 (N, 1, h, w)."""
        mask = lr_seg.new_zeros((lr_seg.shape[0], 1, *lr_seg.shape[-2:]))
        for box in inputs.hr_boxes:
            y1, y2, x1, x2 = _scaled_box(box, inputs.hr_size, lr_seg.shape[-2:],
                                         'HR crop')
            mask[:, :, y1:y2, x1:x2] = 1
        return mask

    def scale_attention_map(self, lr_feats: List[Tensor]) -> Tensor:
        """a = sigmoid(h_A(f_LR)), (N, C or 1, h, w)."""
        return torch.sigmoid(self.scale_attention(lr_feats))

    def forward(self, inputs: MultiResFeatures) -> Tuple[Tensor, Tensor, Tensor]:
        """(fused logits on the HR output grid of the whole image, LR logits, HR
        window logits (k * N, window-major))."""
        inputs = self._check_inputs(inputs)
        lr_seg = self.head(inputs.lr)
        hr_seg = self.head(inputs.hr)
        att = self.scale_attention_map(inputs.lr)
        n = lr_seg.shape[0]
        ratio = inputs.scale_ratio
        size = (int(lr_seg.shape[-2] * ratio), int(lr_seg.shape[-1] * ratio))
        canvas, count = self._hr_canvas(hr_seg, inputs, n, size)
        if not self._windows_cover(inputs, size):
            # A training crop: no HR prediction outside it, so no attention there.
            att = att * self._lr_window_mask(inputs, lr_seg)
        fused = fuse_scales(lr_seg, att, canvas, self.align_corners)
        return fused, lr_seg, hr_seg

    def predict(self, inputs: MultiResFeatures, batch_img_metas: List[dict],
                test_cfg) -> Tensor:
        return self.predict_by_feat(self.forward(inputs)[0], batch_img_metas)

    # --------------------------------------------------------------------- loss
    def scale_loss_weights(self, weights: Optional[Dict[str, float]] = None
                           ) -> Dict[str, float]:
        """The weights of the fused, HR and LR losses: HRDA's (1 - w_hr - w_lr,
        w_hr, w_lr) or ``weights`` (keys among 'fused', 'hr', 'lr';
        a missing key weighs 0), checked."""
        if weights is None:
            return dict(fused=1.0 - self.hr_loss_weight - self.lr_loss_weight,
                        hr=self.hr_loss_weight, lr=self.lr_loss_weight)
        unknown = set(weights) - set(SCALE_LOSSES)
        if unknown or not weights or any(
                not isinstance(v, (int, float)) or v < 0 for v in weights.values()):
            raise ValueError(f'HRDAHead: scale loss weights must map some of '
                             f'{list(SCALE_LOSSES)} to numbers >= 0, got {weights!r}')
        return {k: float(weights.get(k, 0.0)) for k in SCALE_LOSSES}

    def loss_by_label(self, seg_logits: Tuple[Tensor, Tensor, Tensor], labels: Tensor,
                      weight: Optional[Tensor], hr_box: Optional[Box],
                      scale_weights: Optional[Dict[str, float]] = None
                      ) -> Dict[str, Tensor]:
        """HRDA's weighted loss of a training forward: the fused loss x (1 -
        hr_loss_weight - lr_loss_weight) (keys ``loss_*``, ``acc_seg``), the HR crop's
        loss against the labels in ``hr_box`` (label pixels) x hr_loss_weight
        (``hr.*``), the LR loss x lr_loss_weight (``lr.*``); a loss whose weight is 0
        is not computed (but for the fused one, whose accuracy is always logged).
        ``scale_weights`` replaces the three weights (:meth:`scale_loss_weights`)."""
        fused, lr_seg, hr_seg = seg_logits
        w = self.scale_loss_weights(scale_weights)
        losses = self._scaled_loss(fused, labels, weight, w['fused'])
        if w['lr'] > 0:
            losses.update(add_prefix(self._scaled_loss(
                lr_seg, labels, weight, w['lr']), 'lr'))
        if w['hr'] > 0:
            if hr_seg.shape[0] != labels.shape[0]:
                raise ValueError('HRDAHead: the HR loss needs one HR window per image '
                                 f'(a training forward), got {hr_seg.shape[0]} HR '
                                 f'logits for {labels.shape[0]} labels')
            y1, y2, x1, x2 = hr_box if hr_box is not None else (
                0, labels.shape[-2], 0, labels.shape[-1])
            hr_weight = None if weight is None else weight[..., y1:y2, x1:x2]
            losses.update(add_prefix(self._scaled_loss(
                hr_seg, labels[..., y1:y2, x1:x2], hr_weight, w['hr']), 'hr'))
        return losses

    def _scaled_loss(self, logits: Tensor, labels: Tensor, weight: Optional[Tensor],
                     scale: float) -> Dict[str, Tensor]:
        losses = self.weighted_loss_by_label(logits, labels, weight)
        if scale != 1.0:
            losses = {k: v * scale if is_loss_key(k) else v for k, v in losses.items()}
        return losses

    def loss(self, inputs: MultiResFeatures, batch_data_samples: List,
             train_cfg=None) -> Dict[str, Tensor]:
        """mmseg's head API: forward and :meth:`loss_by_label` with the samples'
        labels and ``seg_weight``; the inputs' single HR window is the crop."""
        inputs = self._check_inputs(inputs)
        if len(inputs.hr_boxes) != 1:
            raise ValueError('HRDAHead.loss: a training forward has one HR window, '
                             f'got {len(inputs.hr_boxes)}')
        labels = self._stack_batch_gt(batch_data_samples)
        weight = stack_seg_weight(batch_data_samples, labels)
        return self.loss_by_label(self.forward(inputs), labels, weight,
                                  inputs.hr_boxes[0])

    def loss_by_feat(self, seg_logits, batch_data_samples):
        raise NotImplementedError('HRDAHead: the loss needs the HR crop box; use '
                                  'loss() or loss_by_label()')

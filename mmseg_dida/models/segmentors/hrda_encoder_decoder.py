"""HRDA's multi-resolution segmentor (Hoyer et al., "HRDA: Context-Aware
High-Resolution Domain-Adaptive Semantic Segmentation", ECCV 2022, Sec. 3.2-3.4).

Training (per batch): the whole training crop at the LR scale (context, 0.5) and one
random HR detail crop of it at scale 1, ``hr_crop_size``, whose coordinates are
multiples of ``crop_coord_divisible`` (so that the crop falls on the LR and HR output
grids of the :class:`~mmseg_dida.models.decode_heads.HRDAHead`). The crop box is
drawn for each forward and travels with its batch
(:class:`~mmseg_dida.models.decode_heads.MultiResFeatures`), never in class state.

Inference (pseudo labels and test): the whole image at the LR scale plus overlapping
HR windows of ``hr_crop_size`` with stride crop / 2, batched through the backbone
(:func:`slide_boxes`); at test time an outer (batched) slide over the image with
``test_cfg`` crop/stride as in mmseg.

The feature distance of DAFormer is computed on the LR features (``feature_scale``
0.5, as HRDA) against a reference network's features of the same LR image.

Differences from the original code: the random crop offset reaches every multiple of
``crop_coord_divisible`` whose crop fits (the original never drew the last one, e.g.
512 of 0..512), and it is drawn from torch's generator (mmengine's seed) instead of
numpy's; the crop box is part of the forward's output instead of class-level state.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import add_prefix
from torch import Tensor

from ..decode_heads.hrda_head import HRDAHead, MultiResFeatures
from ..decode_heads.weighted_loss import stack_seg_weight
from .uda_segmentor import (
    Box,
    TrainForward,
    UDASegmentor,
    ViewTransform,
    as_label_map,
    crop_box,
)

__all__ = ['HRDAEncoderDecoder', 'random_crop_box', 'slide_boxes']


def random_crop_box(image_size: Sequence[int], crop_size: Sequence[int],
                    divisible: int = 1,
                    generator: Optional[torch.Generator] = None) -> Box:
    """A uniformly drawn crop (y1, y2, x1, x2) of ``crop_size`` inside an image of
    ``image_size`` whose offsets are multiples of ``divisible``: y1 is one of 0,
    d, 2d, ..., floor((H - h) / d) d (every such crop fits), likewise x1. A crop of the
    image's size is the whole image (no random draw)."""
    (h, w), (ch, cw) = image_size, crop_size
    if not (0 < ch <= h and 0 < cw <= w):
        raise ValueError(f'random_crop_box: crop {ch}x{cw} does not fit in an image of '
                         f'{h}x{w}')
    if divisible < 1:
        raise ValueError(f'random_crop_box: divisible must be >= 1, got {divisible}')
    if (ch, cw) == (h, w):
        return (0, h, 0, w)
    if generator is None:  # what torch draws from when given none, named as a CPU one
        generator = torch.default_generator
    y1 = int(torch.randint((h - ch) // divisible + 1, (), generator=generator)) * divisible
    x1 = int(torch.randint((w - cw) // divisible + 1, (), generator=generator)) * divisible
    return (y1, y1 + ch, x1, x1 + cw)


def slide_boxes(image_size: Sequence[int], crop_size: Sequence[int],
                stride: Sequence[int]) -> List[Box]:
    """mmseg's sliding windows: a grid of ``crop_size`` windows every ``stride``
    pixels, the last row/column shifted back to end at the image border, windows
    clipped to the image when it is smaller. They cover every pixel."""
    (h, w), (ch, cw), (sh, sw) = image_size, crop_size, stride
    if min(ch, cw, sh, sw) < 1:
        raise ValueError(f'slide_boxes: crop {tuple(crop_size)} and stride '
                         f'{tuple(stride)} must be positive')
    h_grids = max(h - ch + sh - 1, 0) // sh + 1
    w_grids = max(w - cw + sw - 1, 0) // sw + 1
    boxes = []
    for i in range(h_grids):
        for j in range(w_grids):
            y2, x2 = min(i * sh + ch, h), min(j * sw + cw, w)
            boxes.append((max(y2 - ch, 0), y2, max(x2 - cw, 0), x2))
    return boxes


def _pair(value, name: str) -> Tuple[int, int]:
    if isinstance(value, int):
        value = (value, value)
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or any(not isinstance(v, int) or v < 1 for v in value)):
        raise ValueError(f'HRDAEncoderDecoder: {name} must be a positive int or an '
                         f'(h, w) pair of them, got {value!r}')
    return tuple(value)


@MODELS.register_module()
class HRDAEncoderDecoder(EncoderDecoder, UDASegmentor):
    """HRDA segmentor; implements the self-training step's student contract
    (:class:`~mmseg_dida.models.segmentors.UDASegmentor`).

    Args:
        backbone, decode_head, neck, train_cfg, test_cfg, data_preprocessor,
            pretrained, init_cfg: As mmseg's ``EncoderDecoder``; ``decode_head`` must
            be an :class:`HRDAHead`. ``test_cfg`` may set ``batched_slide=True``
            (HRDA): the outer slide windows go through the network as one batch.
        scales: (LR scale, HR scale); HRDA (0.5, 1). The HR scale must be 1 (the
            detail crop is cut from the input at its resolution).
        hr_crop_size: (h, w) of the HR detail crop (HRDA 512x512 in 1024x1024
            training crops); None: the whole image at the HR scale (no crop).
        crop_coord_divisible: The crop offsets are multiples of this (HRDA 8 = output
            stride 4 / LR scale 0.5, so the crop falls on the LR output grid).
        feature_scale: The scale whose features the feature distance pulls (HRDA:
            the LR scale, as DAFormer's input resolution).
        hr_slide_inference: HR prediction at inference by overlapping windows of
            ``hr_crop_size`` (HRDA) instead of the whole HR image at once.
        hr_slide_overlapping: Window stride crop / 2 (HRDA) instead of crop.
    """

    def __init__(self, backbone: dict, decode_head: dict,
                 scales: Sequence[float] = (0.5, 1.0),
                 hr_crop_size: Optional[Sequence[int]] = (512, 512),
                 crop_coord_divisible: int = 8, feature_scale: float = 0.5,
                 hr_slide_inference: bool = True, hr_slide_overlapping: bool = True,
                 neck: Optional[dict] = None, auxiliary_head: Optional[dict] = None,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 pretrained: Optional[str] = None, init_cfg=None):
        if auxiliary_head is not None:
            raise NotImplementedError('HRDAEncoderDecoder: auxiliary heads are not '
                                      'supported (neither are they by HRDA)')
        if (len(scales) != 2 or float(scales[1]) != 1.0
                or not 0 < float(scales[0]) < 1):
            raise ValueError('HRDAEncoderDecoder: scales must be (LR scale in (0, 1), '
                             f'HR scale 1.0), got {tuple(scales)}')
        if float(feature_scale) not in [float(s) for s in scales]:
            raise ValueError(f'HRDAEncoderDecoder: feature_scale {feature_scale} must '
                             f'be one of the scales {tuple(scales)}')
        if not isinstance(crop_coord_divisible, int) or crop_coord_divisible < 1:
            raise ValueError('HRDAEncoderDecoder: crop_coord_divisible must be an int '
                             f'>= 1, got {crop_coord_divisible!r}')
        if hr_crop_size is None and hr_slide_inference:
            raise ValueError('HRDAEncoderDecoder: hr_slide_inference needs '
                             'hr_crop_size (the window size)')
        super().__init__(backbone=backbone, decode_head=decode_head, neck=neck,
                         train_cfg=train_cfg, test_cfg=test_cfg,
                         data_preprocessor=data_preprocessor, pretrained=pretrained,
                         init_cfg=init_cfg)
        if not isinstance(self.decode_head, HRDAHead):
            raise TypeError('HRDAEncoderDecoder: decode_head must be an HRDAHead, got '
                            f'{type(self.decode_head).__name__}')
        self.lr_scale, self.hr_scale = float(scales[0]), float(scales[1])
        self.feature_scale = float(feature_scale)
        self.hr_crop_size = (None if hr_crop_size is None else
                             _pair(hr_crop_size, 'hr_crop_size'))
        self.crop_coord_divisible = crop_coord_divisible
        self.hr_slide_inference = hr_slide_inference
        self.hr_slide_overlapping = hr_slide_overlapping
        if self.test_cfg is not None and self.test_cfg.get('mode') == 'slide':
            for key in ('crop_size', 'stride'):
                _pair(self.test_cfg.get(key), f'test_cfg.{key}')

    # ------------------------------------------------------------------ views
    def backbone_feat(self, inputs: Tensor) -> List[Tensor]:
        """Backbone (+ neck) levels of ``inputs`` as given (no rescaling)."""
        x = self.backbone(inputs)
        if self.with_neck:
            x = self.neck(x)
        return [x] if isinstance(x, Tensor) else list(x)

    def _lr_image(self, inputs: Tensor) -> Tensor:
        return resize(inputs, scale_factor=self.lr_scale, mode='bilinear',
                      align_corners=self.align_corners)

    def _multires(self, inputs: Tensor, boxes: List[Box],
                  view_transform: Optional[ViewTransform] = None
                  ) -> MultiResFeatures:
        """LR features of the whole image and HR features of ``boxes`` (batched);
        ``view_transform`` (the contract's) applied to the LR image ('lr') and to
        the HR windows ('input')."""
        lr_image = self._lr_image(inputs)
        if view_transform is not None:
            lr_image = view_transform(lr_image, 'lr')
        lr = self.backbone_feat(lr_image)
        crops = torch.cat([crop_box(inputs, b) for b in boxes]) if len(boxes) > 1 \
            else crop_box(inputs, boxes[0])
        if view_transform is not None:
            crops = view_transform(crops, 'input')
        hr = self.backbone_feat(crops)
        return MultiResFeatures(lr=lr, hr=hr, hr_boxes=list(boxes),
                                hr_size=tuple(inputs.shape[-2:]),
                                scale_ratio=self.hr_scale / self.lr_scale)

    def train_crop_box(self, image_size: Sequence[int]) -> Box:
        """The HR detail crop of a training forward (the whole image without
        ``hr_crop_size``)."""
        if self.hr_crop_size is None:
            return (0, image_size[0], 0, image_size[1])
        return random_crop_box(image_size, self.hr_crop_size, self.crop_coord_divisible)

    def inference_boxes(self, image_size: Sequence[int]) -> List[Box]:
        """The HR windows of inference."""
        if not self.hr_slide_inference:
            return [(0, image_size[0], 0, image_size[1])]
        crop = self.hr_crop_size
        stride = tuple(c // 2 for c in crop) if self.hr_slide_overlapping else crop
        return slide_boxes(image_size, crop, stride)

    def extract_feat(self, inputs: Tensor) -> MultiResFeatures:
        """The inference features: LR whole image + HR windows."""
        return self._multires(inputs, self.inference_boxes(inputs.shape[-2:]))

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """Fused logits of the inference features, resized to the input size."""
        fused = self.decode_head(self.extract_feat(inputs))[0]
        return resize(fused, size=inputs.shape[-2:], mode='bilinear',
                      align_corners=self.align_corners)

    def _forward(self, inputs: Tensor, data_samples=None) -> Tensor:
        return self.decode_head(self.extract_feat(inputs))[0]

    def slide_inference(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """mmseg's sliding-window inference; with ``test_cfg.batched_slide`` all
        windows go through :meth:`encode_decode` as one batch (HRDA)."""
        if not self.test_cfg.get('batched_slide', False):
            return super().slide_inference(inputs, batch_img_metas)
        n = inputs.shape[0]
        boxes = slide_boxes(inputs.shape[-2:], _pair(self.test_cfg.crop_size, 'crop'),
                            _pair(self.test_cfg.stride, 'stride'))
        crops = torch.cat([crop_box(inputs, b) for b in boxes])
        logits = self.encode_decode(crops, batch_img_metas)
        preds = inputs.new_zeros((n, logits.shape[1], *inputs.shape[-2:]))
        count = inputs.new_zeros((n, 1, *inputs.shape[-2:]))
        for j, (y1, y2, x1, x2) in enumerate(boxes):
            preds = preds + F.pad(logits[j * n:(j + 1) * n],
                                  (x1, preds.shape[-1] - x2, y1, preds.shape[-2] - y2))
            count[:, :, y1:y2, x1:x2] += 1
        return preds / count

    # ------------------------------------------------------ the student contract
    def uda_forward(self, inputs: Tensor,
                    view_transform: Optional[ViewTransform] = None) -> TrainForward:
        """LR context of the whole input + one random HR detail crop."""
        box = self.train_crop_box(inputs.shape[-2:])
        feats = self._multires(inputs, [box], view_transform)
        return TrainForward(logits=self.decode_head(feats), feats=feats,
                            pixel_feats=feats.hr, pixel_box=box)

    def uda_loss(self, out: TrainForward, labels: Tensor,
                 weight: Optional[Tensor] = None,
                 scale_weights: Optional[dict] = None):
        """The head's fused / detail-crop / LR losses; ``scale_weights`` (keys among
        'fused', 'hr', 'lr') replaces the head's own weights of the three."""
        labels = as_label_map(labels)
        losses = self.decode_head.loss_by_label(out.logits, labels, weight,
                                                out.feats.hr_boxes[0], scale_weights)
        return add_prefix(losses, 'decode')

    def fd_view(self, out: TrainForward, inputs: Tensor, labels: Tensor
                ) -> Tuple[Tensor, Tensor, Tensor]:
        """LR scale: the LR last level, the LR image, the full labels; HR scale: the
        crop's last level, the crop, its labels."""
        labels = as_label_map(labels)
        if self.feature_scale == self.lr_scale:
            return out.feats.lr[-1], self._lr_image(inputs), labels
        box = out.feats.hr_boxes[0]
        return out.feats.hr[-1], crop_box(inputs, box), crop_box(labels, box)

    def loss(self, inputs: Tensor, data_samples: List) -> dict:
        """mmseg's API: the contract's losses with the samples' labels and
        ``seg_weight``."""
        labels = torch.stack([s.gt_sem_seg.data for s in data_samples])
        weight = stack_seg_weight(data_samples, labels)
        return self.uda_loss(self.uda_forward(inputs), labels, weight)

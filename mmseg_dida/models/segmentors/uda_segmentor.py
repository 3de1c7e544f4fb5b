"""The student contract of the self-training step: losses and features of a batch, with
per-pixel weights.

The UDA host (:class:`~mmseg_dida.models.uda.DACS`), its ImageNet feature distance and
every plug-in (MIC, DiDA) talk to the student only through these four calls, so that a
single-scale segmentor (mmseg's ``EncoderDecoder``) and a multi-resolution one
(:class:`~mmseg_dida.models.segmentors.HRDAEncoderDecoder`) are trained by the same
code::

    seg = as_uda_segmentor(student)
    out = seg.uda_forward(images)                     # a training forward of a batch
    losses = seg.uda_loss(out, labels, weight)        # its supervised losses (mmseg keys)
    feat, view, view_labels = seg.fd_view(out, images, labels)
    ref = seg.backbone_feat(view)                     # backbone on an image as given

* :meth:`UDASegmentor.uda_forward` runs the network as in training (dropout on, the
  segmentor's own training views: HRDA draws its detail crop here) and returns a
  :class:`TrainForward`;
* :meth:`UDASegmentor.uda_loss` is the segmentor's supervised loss of that forward
  against labels, each pixel's term multiplied by ``weight`` (the pseudo-label
  confidence q^T of DACS, DAFormer Eq. 3), weighted across heads and scales exactly as
  the segmentor weights its own losses (HRDA: fused 0.9, detail crop 0.1);
* :meth:`UDASegmentor.fd_view` tells the feature distance (DAFormer Eq. 5-6) which
  feature map to pull, and which image (and labels) of the same view a frozen reference
  network must see: the whole image for ``EncoderDecoder``, the image at
  ``feature_scale`` for HRDA;
* :meth:`UDASegmentor.backbone_feat` runs backbone (+ neck) on an image as given.

mmseg's ``EncoderDecoder`` is adapted (:class:`EncoderDecoderUDA`), so DAFormer configs
keep their plain ``type='EncoderDecoder'`` segmentor and the exported model stays a
plain mmseg model; :class:`~mmseg_dida.models.segmentors.HRDAEncoderDecoder`
implements the contract itself.
"""
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from mmengine.structures import PixelData
from mmseg.models.segmentors import EncoderDecoder
from mmseg.structures import SegDataSample
from mmseg.utils import add_prefix
from torch import Tensor, nn

from ..losses.loss_keys import is_loss_key

__all__ = ['TrainForward', 'UDASegmentor', 'EncoderDecoderUDA', 'as_uda_segmentor',
           'as_label_map', 'crop_box', 'head_loss', 'sum_losses']

Box = Tuple[int, int, int, int]  # (y1, y2, x1, x2) in pixels, end exclusive
# (image of a view, the view's name: 'input' or 'lr') -> the image the backbone sees
ViewTransform = Callable[[Tensor, str], Tensor]


def crop_box(x: Tensor, box: Optional[Box]) -> Tensor:
    """The (y1:y2, x1:x2) window of the last two dimensions of ``x`` (None: ``x``)."""
    if box is None:
        return x
    y1, y2, x1, x2 = box
    return x[..., y1:y2, x1:x2]


def as_label_map(labels: Tensor) -> Tensor:
    """Labels as (N, 1, H, W) long from (N, H, W) or (N, 1, H, W)."""
    if labels.dim() == 3:
        labels = labels[:, None]
    if labels.dim() != 4 or labels.shape[1] != 1:
        raise ValueError(f'UDASegmentor: labels must be (N, H, W) or (N, 1, H, W), got '
                         f'{tuple(labels.shape)}')
    return labels.long()


def sum_losses(losses: Dict[str, Tensor]) -> Tensor:
    """The sum of the losses of a loss dict (the entries :func:`is_loss_key` names)."""
    values = [v for k, v in losses.items() if is_loss_key(k)]
    if not values:
        raise ValueError(f'sum_losses: no loss among {sorted(losses)}')
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


def _select(value: Any, index: slice) -> Any:
    if isinstance(value, Tensor):
        return value[index]
    if isinstance(value, (list, tuple)):
        return type(value)(_select(v, index) for v in value)
    if hasattr(value, 'select'):
        return value.select(index)
    return value


@dataclass
class TrainForward:
    """One training forward of a batch through a student.

    Attributes:
        logits: What the segmentor's loss reads: the decode head's output (a tensor for
            single-scale heads; HRDA: (fused, lr, hr)).
        feats: The backbone features as the decode head read them (a list of levels;
            HRDA: a :class:`~mmseg_dida.models.decode_heads.MultiResFeatures`).
        pixel_feats: The backbone levels of the view at the input's own resolution
            (the whole input for ``EncoderDecoder``; HRDA's detail crop): what a dense
            per-pixel head (DiDA's h') reads.
        pixel_box: That view's window in input pixels (y1, y2, x1, x2); None for the
            whole input.
        aux_logits: The auxiliary heads' outputs (mmseg ``auxiliary_head``), if any.
    """
    logits: Union[Tensor, Tuple[Tensor, ...]]
    feats: Any
    pixel_feats: List[Tensor]
    pixel_box: Optional[Box] = None
    aux_logits: Optional[List[Tensor]] = None

    @property
    def seg_logits(self) -> Tensor:
        """The main segmentation logits (HRDA: the fused ones)."""
        return self.logits[0] if isinstance(self.logits, tuple) else self.logits

    def select(self, index: slice) -> 'TrainForward':
        """The forward of the images ``index`` of the batch (a view, no copy)."""
        if not isinstance(index, slice):
            raise TypeError(f'TrainForward.select: index must be a slice, got '
                            f'{type(index).__name__}')
        return replace(self, logits=_select(self.logits, index),
                       feats=_select(self.feats, index),
                       pixel_feats=_select(self.pixel_feats, index),
                       aux_logits=_select(self.aux_logits, index))


def head_loss(head: nn.Module, logits: Tensor, labels: Tensor,
              weight: Optional[Tensor] = None) -> Dict[str, Tensor]:
    """A decode head's loss of ``logits`` against ``labels`` (N, 1, H, W), each pixel's
    term times ``weight`` (N, H, W) when given.

    Heads with :class:`~mmseg_dida.models.decode_heads.SegWeightLossMixin` compute it
    directly; other mmseg heads through their ``loss_by_feat`` (unweighted only)."""
    if hasattr(head, 'weighted_loss_by_label'):
        return head.weighted_loss_by_label(logits, labels, weight)
    if weight is not None:
        raise ValueError(f'UDASegmentor: the head {type(head).__name__} has no '
                         'per-pixel weighted loss (SegWeightLossMixin), but the step '
                         'passed pixel weights')
    samples = []
    for label in labels:
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    return head.loss_by_feat(logits, samples)


class UDASegmentor:
    """The contract (see the module docstring). Implemented by
    :class:`EncoderDecoderUDA` (around mmseg's ``EncoderDecoder``) and by
    :class:`~mmseg_dida.models.segmentors.HRDAEncoderDecoder`."""

    def uda_forward(self, inputs: Tensor,
                    view_transform: Optional[ViewTransform] = None) -> TrainForward:
        """A training forward of the normalised images ``inputs`` (N, 3, H, W).

        ``view_transform(image, view)``, when given, is applied to the image of each
        view just before the backbone sees it: ``'input'`` for a view at the input's
        own resolution (the whole input; HRDA's detail crop), ``'lr'`` for HRDA's
        downscaled context (DiDA degrades each view at its own resolution this
        way)."""
        raise NotImplementedError

    def uda_loss(self, out: TrainForward, labels: Tensor,
                 weight: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """The supervised losses of ``out`` against ``labels`` ((N, H, W) or
        (N, 1, H, W), at the input resolution; 255 ignored), each pixel's term times
        ``weight`` (N, H, W) when given. Keys as mmseg (``decode.loss_ce``,
        ``decode.acc_seg``, ...); every loss already carries the segmentor's own
        weighting."""
        raise NotImplementedError

    def fd_view(self, out: TrainForward, inputs: Tensor, labels: Tensor
                ) -> Tuple[Tensor, Tensor, Tensor]:
        """For the feature distance: (the last backbone level of ``out`` that is
        pulled, the image of ``inputs`` in the view that level was computed from, the
        labels (N, 1, h, w) of that view)."""
        raise NotImplementedError

    def backbone_feat(self, inputs: Tensor) -> List[Tensor]:
        """Backbone (+ neck) levels of ``inputs`` as given (no rescaling, no crop)."""
        raise NotImplementedError

    def uda_forward_loss(self, inputs: Tensor, labels: Tensor,
                         weight: Optional[Tensor] = None
                         ) -> Tuple[Dict[str, Tensor], TrainForward]:
        """:meth:`uda_forward` and :meth:`uda_loss` in one call."""
        out = self.uda_forward(inputs)
        return self.uda_loss(out, labels, weight), out


class EncoderDecoderUDA(UDASegmentor):
    """The contract for mmseg's ``EncoderDecoder`` (an adapter; holds no parameters).

    ``uda_forward`` is ``extract_feat`` + the decode (and auxiliary) heads' forward;
    ``uda_loss`` is each head's loss with the ``decode.``/``aux.`` prefixes of
    ``EncoderDecoder.loss``: the same computation as mmseg's ``loss`` with the weight
    carried by the data samples (:class:`SegWeightLossMixin`)."""

    def __init__(self, model: EncoderDecoder):
        if not isinstance(model, EncoderDecoder):
            raise TypeError(f'EncoderDecoderUDA: expected an EncoderDecoder, got '
                            f'{type(model).__name__}')
        self.model = model

    def _aux_heads(self) -> List[Tuple[str, nn.Module]]:
        if not getattr(self.model, 'with_auxiliary_head', False):
            return []
        aux = self.model.auxiliary_head
        if isinstance(aux, nn.ModuleList):
            return [(f'aux_{i}', h) for i, h in enumerate(aux)]
        return [('aux', aux)]

    def uda_forward(self, inputs: Tensor,
                    view_transform: Optional[ViewTransform] = None) -> TrainForward:
        if view_transform is not None:
            inputs = view_transform(inputs, 'input')
        feats = self.model.extract_feat(inputs)
        logits = self.model.decode_head(feats)
        aux = [head(feats) for _, head in self._aux_heads()] or None
        return TrainForward(logits=logits, feats=feats, pixel_feats=list(feats),
                            aux_logits=aux)

    def uda_loss(self, out: TrainForward, labels: Tensor,
                 weight: Optional[Tensor] = None) -> Dict[str, Tensor]:
        labels = as_label_map(labels)
        losses = add_prefix(head_loss(self.model.decode_head, out.logits, labels,
                                      weight), 'decode')
        for (name, head), logits in zip(self._aux_heads(), out.aux_logits or []):
            losses.update(add_prefix(head_loss(head, logits, labels, weight), name))
        return losses

    def fd_view(self, out: TrainForward, inputs: Tensor, labels: Tensor
                ) -> Tuple[Tensor, Tensor, Tensor]:
        return out.feats[-1], inputs, as_label_map(labels)

    def backbone_feat(self, inputs: Tensor) -> List[Tensor]:
        return self.model.extract_feat(inputs)


def as_uda_segmentor(model: nn.Module) -> UDASegmentor:
    """The contract of a student: the model itself when it implements it (HRDA), the
    :class:`EncoderDecoderUDA` adapter for mmseg's ``EncoderDecoder``."""
    if isinstance(model, UDASegmentor):
        return model
    if isinstance(model, EncoderDecoder):
        return EncoderDecoderUDA(model)
    raise TypeError(f'as_uda_segmentor: {type(model).__name__} is neither an mmseg '
                    'EncoderDecoder nor a UDASegmentor; the self-training step needs '
                    'one of them as its student')


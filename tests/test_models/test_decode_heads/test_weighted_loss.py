"""Per-pixel seg_weight loss: equals the original DAFormer reduction
(CE(reduction='none') * weight, mean over ALL pixels incl. ignored), reduces to mmseg's
loss without weights, known closed-form values, gradients, and errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import mmseg_dida  # noqa: F401

C = 5


def samples(labels, weights=None):
    out = []
    for i, lab in enumerate(labels):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=lab[None].long())
        if weights is not None and weights[i] is not None:
            s.seg_weight = PixelData(data=weights[i][None].float())
        out.append(s)
    return out


def heads():
    norm = dict(type='BN')
    return [
        MODELS.build(dict(type='DAFormerHead', in_channels=[4, 4], in_index=[0, 1],
                          embed_dims=4, channels=4, num_classes=C, norm_cfg=norm,
                          fusion_dilations=(1, 2), align_corners=False)),
        MODELS.build(dict(type='DLV2Head', in_channels=4, in_index=0, num_classes=C,
                          dilations=(1, 2))),
        MODELS.build(dict(type='WeightedSegformerHead', in_channels=[4, 4],
                          in_index=[0, 1], channels=4, num_classes=C, norm_cfg=norm,
                          align_corners=False)),
    ]


def reference(logits, labels, weights):
    """The original DAFormer: F.cross_entropy(reduction='none', ignore 255) * w,
    then mean over all N*H*W pixels."""
    ce = F.cross_entropy(logits, labels, reduction='none', ignore_index=255)
    return (ce * weights).sum() / labels.numel()


@pytest.mark.parametrize('head', heads(), ids=lambda h: type(h).__name__)
def test_weighted_loss_matches_original_reduction(head):
    torch.manual_seed(0)
    logits = torch.randn(3, C, 6, 7, requires_grad=True)
    labels = torch.randint(0, C, (3, 6, 7))
    labels[0, :2] = 255
    labels[2, :, :3] = 255
    w = [torch.rand(6, 7), None, torch.full((6, 7), 0.25)]
    loss = head.loss_by_feat(logits, samples(labels, w))
    full_w = torch.stack([w[0], torch.ones(6, 7), w[2]])
    torch.testing.assert_close(loss['loss_ce'], reference(logits, labels, full_w))


@pytest.mark.parametrize('head', heads(), ids=lambda h: type(h).__name__)
def test_without_weights_equals_mmseg_loss(head):
    torch.manual_seed(1)
    logits = torch.randn(2, C, 4, 4)
    labels = torch.randint(0, C, (2, 8, 8))  # logits are resized to the labels
    labels[1, 0] = 255
    ours = head.loss_by_feat(logits, samples(labels))
    mmseg = BaseDecodeHead.loss_by_feat(head, logits, samples(labels))
    assert set(ours) == {'loss_ce', 'acc_seg'}
    torch.testing.assert_close(ours['loss_ce'], mmseg['loss_ce'])
    torch.testing.assert_close(ours['acc_seg'], mmseg['acc_seg'])


def test_known_value_ignored_pixels_count_in_the_mean():
    """Uniform logits: CE = log C at every labelled pixel. Half the pixels ignored,
    weight q = 0.5: loss = 0.5 * log C * (labelled fraction 0.5) = log(C) / 4."""
    head = heads()[1]
    logits = torch.zeros(2, C, 4, 4)
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[:, :2] = 255
    w = [torch.full((4, 4), 0.5)] * 2
    loss = head.loss_by_feat(logits, samples(labels, w))['loss_ce']
    assert loss.item() == pytest.approx(math.log(C) / 4, rel=1e-6)


def test_zero_weight_sample_gets_no_gradient_and_weight_scales_gradient():
    head = heads()[1]
    torch.manual_seed(2)
    logits = torch.randn(2, C, 4, 4, requires_grad=True)
    labels = torch.randint(0, C, (2, 4, 4))
    w = [torch.zeros(4, 4), torch.full((4, 4), 3.0)]
    head.loss_by_feat(logits, samples(labels, w))['loss_ce'].backward()
    assert logits.grad[0].abs().max() == 0
    g_weighted = logits.grad[1].clone()
    logits.grad = None
    head.loss_by_feat(logits, samples(labels))['loss_ce'].backward()
    torch.testing.assert_close(g_weighted, 3.0 * logits.grad[1])


def test_loss_through_head_loss_api_uses_seg_weight():
    """``head.loss(feats, samples, train_cfg)`` (what EncoderDecoder calls)."""
    head = heads()[0].eval()  # deterministic forward (dropout off)
    torch.manual_seed(3)
    feats = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)]
    labels = torch.randint(0, C, (2, 32, 32))
    base = head.loss(feats, samples(labels), {})['loss_ce']
    half = head.loss(feats, samples(labels, [torch.full((32, 32), 0.5)] * 2),
                     {})['loss_ce']
    torch.testing.assert_close(half, 0.5 * base)


def test_wrong_weight_shape_is_an_error():
    head = heads()[1]
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match='sample 0 has seg_weight'):
        head.loss_by_feat(torch.zeros(1, C, 4, 4),
                          samples(labels, [torch.ones(2, 4)]))

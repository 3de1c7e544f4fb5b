"""DIC loss L_D (Eq. 6): known values, ignore handling, q^T weighting, lambda_D."""
import math

import pytest
import torch
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.models.losses.dic_loss import weighted_cross_entropy


def test_uniform_logits_give_log_num_classes():
    logits = torch.zeros(2, 19, 4, 4)
    label = torch.randint(0, 19, (2, 4, 4))
    assert weighted_cross_entropy(logits, label).item() == pytest.approx(math.log(19))
    label[0] = 255  # half the pixels ignored: they count as 0 in the mean
    assert weighted_cross_entropy(logits, label).item() == pytest.approx(
        math.log(19) / 2)


def test_dic_loss_against_reference_loop():
    torch.manual_seed(0)
    loss = MODELS.build(dict(type='DICLoss', loss_weight=0.5))
    logits = torch.randn(4, 5, 4, 4, requires_grad=True)
    labels = torch.randint(0, 5, (4, 8, 8))
    labels[1, :2] = 255
    labels[3, :, :3] = 255
    q = torch.rand(2, 8, 8)
    out = loss(logits, labels, num_src=2, tgt_weight=q)
    up = torch.nn.functional.interpolate(logits, size=(8, 8), mode='bilinear',
                                         align_corners=False)
    logp = up.log_softmax(1)

    def ref(idx, w):
        total = 0.0
        for n in idx:
            for i in range(8):
                for j in range(8):
                    y = labels[n, i, j].item()
                    if y != 255:
                        wij = 1.0 if w is None else w[n - idx[0], i, j].item()
                        total -= wij * logp[n, y, i, j].item()
        return total / (len(idx) * 64)

    src_ref = 0.5 * ref([0, 1], None)
    assert out['loss_dic_src'].item() == pytest.approx(src_ref, rel=1e-5)
    assert out['loss_dic_tgt'].item() == pytest.approx(0.5 * ref([2, 3], q), rel=1e-5)
    # zero confidence -> no target gradient, source gradient untouched
    out0 = loss(logits, labels, num_src=2, tgt_weight=torch.zeros(2, 8, 8))
    (g, ) = torch.autograd.grad(out0['loss_dic_tgt'], logits)
    assert torch.equal(g, torch.zeros_like(g))


def test_dic_loss_validates():
    with pytest.raises(ValueError, match='lambda_D'):
        MODELS.build(dict(type='DICLoss', loss_weight=-1))
    with pytest.raises(TypeError, match='loss_weight'):  # lambda_D's default is DiDA's
        MODELS.build(dict(type='DICLoss'))
    loss = MODELS.build(dict(type='DICLoss', loss_weight=1.0))
    with pytest.raises(ValueError, match='logits for'):
        loss(torch.zeros(3, 2, 4, 4), torch.zeros(2, 4, 4), num_src=1)


def test_split_batch_equals_joint_batch():
    """Source half and target half computed apart (DiDA's per-domain groups) give
    the joint call's two terms exactly; num_src outside [0, N] is refused."""
    torch.manual_seed(0)
    loss = MODELS.build(dict(type='DICLoss', loss_weight=0.5))
    logits = torch.randn(4, 5, 8, 8)
    labels = torch.randint(0, 5, (4, 8, 8))
    labels[0, :2] = 255
    weight = torch.rand(2, 8, 8)
    joint = loss(logits, labels, num_src=2, tgt_weight=weight)
    src = loss(logits[:2], labels[:2], num_src=2)
    tgt = loss(logits[2:], labels[2:], num_src=0, tgt_weight=weight)
    assert set(src) == {'loss_dic_src'} and set(tgt) == {'loss_dic_tgt'}
    assert torch.equal(src['loss_dic_src'], joint['loss_dic_src'])
    assert torch.equal(tgt['loss_dic_tgt'], joint['loss_dic_tgt'])
    for bad in (-1, 5):
        with pytest.raises(ValueError, match='num_src'):
            loss(logits, labels, num_src=bad)


def test_image_weight_scales_each_image_terms():
    """image_weight w_n multiplies image n's pixel terms (a per-image t weighting):
    equal to the per-pixel weight w_n * q."""
    torch.manual_seed(1)
    loss = MODELS.build(dict(type='DICLoss', loss_weight=0.5))
    logits = torch.randn(4, 3, 6, 6)
    labels = torch.randint(0, 3, (4, 6, 6))
    q = torch.rand(2, 6, 6)
    w = torch.tensor([1.0, 0.25, 0.0, 0.5])
    out = loss(logits, labels, num_src=2, tgt_weight=q, image_weight=w)
    src_ref = loss(logits[:2] * 1, labels[:2], num_src=2)
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction='none')
    assert out['loss_dic_src'].item() == pytest.approx(
        0.5 * (ce[:2] * w[:2].view(2, 1, 1)).mean().item(), rel=1e-6)
    assert out['loss_dic_tgt'].item() == pytest.approx(
        0.5 * (ce[2:] * q * w[2:].view(2, 1, 1)).mean().item(), rel=1e-6)
    assert out['loss_dic_src'] < src_ref['loss_dic_src']
    with pytest.raises(ValueError, match=r'image_weight must be \(4,\)'):
        loss(logits, labels, num_src=2, image_weight=torch.ones(2))

"""DLV2Head: logits = sum of dilated 3x3 convs (checked against F.conv2d), Normal(0.01)
init, output stride 8 with the ResNetV1c-101 config, argument checks."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def build_head(**overrides):
    cfg = dict(type='DLV2Head', in_channels=12, in_index=3, num_classes=4)
    cfg.update(overrides)
    return MODELS.build(cfg)


def test_forward_is_sum_of_dilated_convs():
    torch.manual_seed(0)
    head = build_head()
    feats = [None, None, None, torch.randn(2, 12, 30, 31)]
    out = head(feats)
    ref = 0
    for d, m in zip((6, 12, 18, 24), head.aspp_modules):
        assert m.conv.kernel_size == (3, 3) and m.conv.dilation == (d, d)
        ref = ref + F.conv2d(feats[3], m.conv.weight, m.conv.bias, padding=d,
                             dilation=d)
    assert out.shape == (2, 4, 30, 31)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_no_norm_no_activation_no_dropout_no_conv_seg():
    head = build_head(dilations=(6, 12))
    assert not hasattr(head, 'conv_seg')
    assert head.dropout is None
    assert len(head.aspp_modules) == 2
    for m in head.aspp_modules:
        assert not m.with_norm and not m.with_activation
        assert m.conv.bias is not None


def test_init_is_normal_std_001():
    torch.manual_seed(0)
    head = build_head(in_channels=256, num_classes=19)
    head.init_weights()
    w = torch.cat([m.conv.weight.flatten() for m in head.aspp_modules])
    assert abs(w.std().item() - 0.01) < 0.0005
    assert abs(w.mean().item()) < 0.0005


def test_resnet_v1c_101_config_output_stride_8():
    init_default_scope('mmseg')
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/models/deeplabv2_r101.py'))
    model_cfg = cfg.model
    model_cfg.backbone.init_cfg = None  # no pretrained file in tests
    model_cfg.decode_head.num_classes = 3
    model_cfg.backbone.depth = 50  # same dilation/stride layout, faster on CPU
    seg = MODELS.build(model_cfg)
    assert seg.backbone.contract_dilation and not seg.backbone.norm_eval
    assert seg.backbone.layer4[0].conv2.dilation == (2, 2)  # contracted 4 -> 2
    assert seg.backbone.layer4[1].conv2.dilation == (4, 4)
    seg.eval()
    with torch.no_grad():
        logits = seg(torch.randn(1, 3, 64, 80), mode='tensor')
    assert logits.shape == (1, 3, 8, 10)


@pytest.mark.parametrize('bad, match', [
    (dict(channels=256), 'fixed'),
    (dict(norm_cfg=dict(type='BN')), 'fixed'),
    (dict(dilations=(6, 0)), 'dilations'),
    (dict(in_channels=[12, 12], in_index=[2, 3], input_transform='multiple_select'),
     'in_channels'),
])
def test_invalid_arguments_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        build_head(**bad)


def test_deeplabv2red_config_uses_dilations_6_12():
    init_default_scope('mmseg')
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/models/deeplabv2red_r101.py'))
    assert cfg.model.decode_head.dilations == (6, 12)
    assert cfg.model.backbone.depth == 101

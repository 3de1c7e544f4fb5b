"""DAFormerHead: output size/stride, MLP embedding = per-pixel linear map, fusion
structure (depthwise-separable ASPP 1/6/12/18 + 3x3 bottleneck), argument checks."""
import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401  (registers components, mmcv ops shim)
from mmseg_dida.models.decode_heads.daformer_head import MLPEmbedding

IN_CHANNELS = [16, 24, 40, 48]


def build_head(**overrides):
    cfg = dict(
        type='DAFormerHead', in_channels=IN_CHANNELS, in_index=[0, 1, 2, 3],
        embed_dims=32, channels=24, num_classes=5, dropout_ratio=0.1,
        norm_cfg=dict(type='BN', requires_grad=True), align_corners=False)
    cfg.update(overrides)
    return MODELS.build(cfg)


def pyramid(n=2, h=32, w=48):
    """Features at strides 4, 8, 16, 32 of an (h*4, w*4) image."""
    return [torch.randn(n, c, h // 2**i, w // 2**i) for i, c in enumerate(IN_CHANNELS)]


def test_output_is_stride_4_of_the_image():
    torch.manual_seed(0)
    head = build_head()
    out = head(pyramid(2, 32, 48))
    assert out.shape == (2, 5, 32, 48)


def test_in_mitb5_encoder_decoder_output_stride():
    """Tiny MiT (same stage strides as B5) + DAFormerHead: logits at 1/4 of the input,
    predict() at full input resolution."""
    torch.manual_seed(0)
    seg = MODELS.build(dict(
        type='EncoderDecoder',
        backbone=dict(type='MixVisionTransformer', embed_dims=8, num_layers=[1] * 4,
                      num_heads=[1, 2, 4, 8], drop_path_rate=0.1),
        decode_head=dict(type='DAFormerHead', in_channels=[8, 16, 32, 64],
                         in_index=[0, 1, 2, 3], embed_dims=16, channels=16,
                         num_classes=3, norm_cfg=dict(type='BN'),
                         align_corners=False)))
    x = torch.randn(1, 3, 64, 96)
    feats = seg.extract_feat(x)
    assert [f.shape[2:] for f in feats] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    assert seg.decode_head(feats).shape == (1, 3, 16, 24)
    assert seg(x, mode='tensor').shape == (1, 3, 16, 24)


def test_mlp_embedding_is_per_pixel_linear():
    torch.manual_seed(0)
    emb = MLPEmbedding(6, 4)
    x = torch.randn(2, 6, 5, 7)
    ref = F.conv2d(x, emb.proj.weight[:, :, None, None], emb.proj.bias)
    torch.testing.assert_close(emb(x), ref, rtol=1e-5, atol=1e-6)


def test_fusion_structure_matches_daformer():
    head = build_head()
    aspp = head.fuse_layer.aspp_modules
    assert isinstance(aspp[0], ConvModule) and aspp[0].conv.kernel_size == (1, 1)
    dil = []
    for m in list(aspp)[1:]:
        assert isinstance(m, DepthwiseSeparableConvModule)
        assert m.depthwise_conv.conv.groups == 4 * 32  # depthwise over concat
        dil.append(m.depthwise_conv.conv.dilation[0])
    assert dil == [6, 12, 18]
    bott = head.fuse_layer.bottleneck
    assert bott.conv.kernel_size == (3, 3)
    assert bott.conv.in_channels == 4 * 24 and bott.conv.out_channels == 24
    # per-level embeddings: linear layers C_i -> 32, no norm/activation
    for i, c in enumerate(IN_CHANNELS):
        assert head.embed_layers[str(i)].proj.weight.shape == (32, c)
    assert head.conv_seg.in_channels == 24


def test_conv_fusion_variant_and_per_level_embed_dims():
    head = build_head(fusion='conv', embed_dims=[8, 8, 16, 16])
    assert head.fuse_layer.conv.kernel_size == (1, 1)
    assert head.fuse_layer.conv.in_channels == 48
    assert head(pyramid(1, 8, 8)).shape == (1, 5, 8, 8)


def test_paper_config_parameter_count():
    """Paper config (in [64,128,320,512], 256/256, BN, 19 classes): the count below is
    sum of linear embeddings + sep-ASPP + bottleneck + classifier, derived by hand."""
    head = MODELS.build(dict(
        type='DAFormerHead', in_channels=[64, 128, 320, 512], in_index=[0, 1, 2, 3],
        channels=256, embed_dims=256, num_classes=19, norm_cfg=dict(type='BN'),
        align_corners=False))
    e = sum(c * 256 + 256 for c in [64, 128, 320, 512])
    cin = 1024
    aspp = (cin * 256 + 2 * 256)  # 1x1 conv (no bias, BN follows) + BN
    aspp += 3 * (cin * 9 + 2 * cin + cin * 256 + 2 * 256)  # dw 3x3+BN, pw 1x1+BN
    bott = 4 * 256 * 256 * 9 + 2 * 256
    cls = 256 * 19 + 19
    assert sum(p.numel() for p in head.parameters()) == e + aspp + bott + cls


def test_gradients_reach_every_level():
    torch.manual_seed(0)
    head = build_head()
    feats = [f.requires_grad_() for f in pyramid(1, 8, 8)]
    head(feats).sum().backward()
    for f in feats:
        assert f.grad is not None and f.grad.abs().sum() > 0


@pytest.mark.parametrize('bad, match', [
    (dict(embed_dims=[8, 8]), 'embed_dims'),
    (dict(fusion='aspp'), 'fusion'),
    (dict(fusion_dilations=(1, 0)), 'fusion_dilations'),
    (dict(align_corners=True), 'align_corners'),
    (dict(input_transform='resize_concat'), 'input_transform'),
])
def test_invalid_arguments_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        build_head(**bad)


def test_daformer_mitb5_config(repo_root, tmp_path, monkeypatch):
    """The paper model builds: MiT-B5 (81.4M encoder parameters as reported for
    SegFormer's MiT-B5, drop path rising linearly to 0.1) + the DAFormer head; its
    init asks for the converted ImageNet file and says how to make it."""
    import os.path as osp

    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmseg_dida.models.utils.weight_loading import PretrainedLoadError
    init_default_scope('mmseg')
    cfg = Config.fromfile(osp.join(repo_root, 'configs/_base_/models/daformer_mitb5.py'))
    seg = MODELS.build(cfg.model)
    n_backbone = sum(p.numel() for p in seg.backbone.parameters())
    assert round(n_backbone / 1e6, 1) == 81.4
    last_block = seg.backbone.layers[3][1][-1]
    assert last_block.ffn.dropout_layer.drop_prob == pytest.approx(0.1)
    assert seg.decode_head.fuse_layer.bottleneck.conv.out_channels == 256
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PretrainedLoadError,
                       match=r'pretrained/mit_b5_mmseg.pth[\s\S]*mit2mmseg_dida'):
        seg.init_weights()

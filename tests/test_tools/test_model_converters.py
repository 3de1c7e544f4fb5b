"""Offline ImageNet-weight converters (tools/model_converters): MiT in SegFormer's
original layout -> mmseg 1.x, and ResNet V1c. No weights can be downloaded here, so the
tests build fake checkpoints with the right key layout and shapes, convert them, and
check (a) every key and shape of mmseg's MiT-B5 is produced from the 1052-tensor
original layout, (b) a converted tiny MiT computes the same features as a reference
forward of the original SegFormer layout written from the paper, (c) the converted
files load completely through the checked loader."""
import importlib.util
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmseg.models.backbones import MixVisionTransformer, ResNetV1c

from mmseg_dida.models.utils.weight_loading import load_pretrained_checked

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
EPS = 1e-6  # mmseg's MiT LayerNorm eps; the reference uses the same


def _load_tool(name):
    path = osp.join(REPO, 'tools', 'model_converters', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_tool_{name}', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


mit_tool = _load_tool('mit2mmseg_dida')
resnet_tool = _load_tool('resnet2mmseg')


def segformer_mit_state(dims, depths, sr_ratios, mlp_ratio=4, device='cpu',
                        with_head=True, seed=0):
    """A random state dict in the original SegFormer MiT key layout."""
    g = torch.Generator().manual_seed(seed)

    def t(*shape):
        if device == 'meta':
            return torch.empty(*shape, device='meta')
        return torch.randn(*shape, generator=g) * 0.2

    sd = {}
    in_ch = 3
    for s, (c, depth, sr) in enumerate(zip(dims, depths, sr_ratios), start=1):
        k = 7 if s == 1 else 3
        sd[f'patch_embed{s}.proj.weight'] = t(c, in_ch, k, k)
        sd[f'patch_embed{s}.proj.bias'] = t(c)
        sd[f'patch_embed{s}.norm.weight'] = 1 + t(c)
        sd[f'patch_embed{s}.norm.bias'] = t(c)
        h = c * mlp_ratio
        for j in range(depth):
            b = f'block{s}.{j}.'
            sd[b + 'norm1.weight'], sd[b + 'norm1.bias'] = 1 + t(c), t(c)
            sd[b + 'attn.q.weight'], sd[b + 'attn.q.bias'] = t(c, c), t(c)
            sd[b + 'attn.kv.weight'], sd[b + 'attn.kv.bias'] = t(2 * c, c), t(2 * c)
            sd[b + 'attn.proj.weight'], sd[b + 'attn.proj.bias'] = t(c, c), t(c)
            if sr > 1:
                sd[b + 'attn.sr.weight'], sd[b + 'attn.sr.bias'] = t(c, c, sr, sr), t(c)
                sd[b + 'attn.norm.weight'], sd[b + 'attn.norm.bias'] = 1 + t(c), t(c)
            sd[b + 'norm2.weight'], sd[b + 'norm2.bias'] = 1 + t(c), t(c)
            sd[b + 'mlp.fc1.weight'], sd[b + 'mlp.fc1.bias'] = t(h, c), t(h)
            sd[b + 'mlp.dwconv.dwconv.weight'] = t(h, 1, 3, 3)
            sd[b + 'mlp.dwconv.dwconv.bias'] = t(h)
            sd[b + 'mlp.fc2.weight'], sd[b + 'mlp.fc2.bias'] = t(c, h), t(c)
        sd[f'norm{s}.weight'], sd[f'norm{s}.bias'] = 1 + t(c), t(c)
        in_ch = c
    if with_head:
        sd['head.weight'], sd['head.bias'] = t(1000, dims[-1]), t(1000)
    return sd


def reference_mit_forward(sd, x, dims, depths, heads, sr_ratios):
    """The original SegFormer encoder (Xie et al. 2021, Sec. 3.1: overlapped patch
    merging, efficient self-attention with reduction ratio R, Mix-FFN), written
    directly on the original-layout weights."""
    outs = []
    for s, (c, depth, nh, sr) in enumerate(
            zip(dims, depths, heads, sr_ratios), start=1):
        k, stride = (7, 4) if s == 1 else (3, 2)
        x = F.conv2d(x, sd[f'patch_embed{s}.proj.weight'],
                     sd[f'patch_embed{s}.proj.bias'], stride=stride, padding=k // 2)
        n, _, hh, ww = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = F.layer_norm(x, (c,), sd[f'patch_embed{s}.norm.weight'],
                         sd[f'patch_embed{s}.norm.bias'], EPS)
        for j in range(depth):
            p = {key[len(f'block{s}.{j}.'):]: v for key, v in sd.items()
                 if key.startswith(f'block{s}.{j}.')}
            y = F.layer_norm(x, (c,), p['norm1.weight'], p['norm1.bias'], EPS)
            q = F.linear(y, p['attn.q.weight'], p['attn.q.bias'])
            q = q.reshape(n, -1, nh, c // nh).transpose(1, 2)
            y_kv = y
            if sr > 1:
                y_kv = y.transpose(1, 2).reshape(n, c, hh, ww)
                y_kv = F.conv2d(y_kv, p['attn.sr.weight'], p['attn.sr.bias'],
                                stride=sr).flatten(2).transpose(1, 2)
                y_kv = F.layer_norm(y_kv, (c,), p['attn.norm.weight'],
                                    p['attn.norm.bias'], EPS)
            kv = F.linear(y_kv, p['attn.kv.weight'], p['attn.kv.bias'])
            kv = kv.reshape(n, -1, 2, nh, c // nh).permute(2, 0, 3, 1, 4)
            attn = (q @ kv[0].transpose(-2, -1)) * (c // nh)**-0.5
            y = (attn.softmax(-1) @ kv[1]).transpose(1, 2).reshape(n, -1, c)
            x = x + F.linear(y, p['attn.proj.weight'], p['attn.proj.bias'])
            y = F.layer_norm(x, (c,), p['norm2.weight'], p['norm2.bias'], EPS)
            y = F.linear(y, p['mlp.fc1.weight'], p['mlp.fc1.bias'])
            hid = y.shape[-1]
            y = y.transpose(1, 2).reshape(n, hid, hh, ww)
            y = F.conv2d(y, p['mlp.dwconv.dwconv.weight'], p['mlp.dwconv.dwconv.bias'],
                         padding=1, groups=hid).flatten(2).transpose(1, 2)
            y = F.linear(F.gelu(y), p['mlp.fc2.weight'], p['mlp.fc2.bias'])
            x = x + y
        x = F.layer_norm(x, (c,), sd[f'norm{s}.weight'], sd[f'norm{s}.bias'], EPS)
        x = x.transpose(1, 2).reshape(n, c, hh, ww)
        outs.append(x)
    return outs


TINY = dict(dims=[8, 16, 32, 64], depths=[1, 2, 1, 1], heads=[1, 2, 4, 8],
            sr_ratios=[8, 4, 2, 1])


def tiny_mmseg_mit():
    return MixVisionTransformer(embed_dims=8, num_layers=TINY['depths'],
                                num_heads=TINY['heads'], sr_ratios=TINY['sr_ratios'])


def test_mitb5_layout_converts_to_every_mmseg_key_with_its_shape():
    src = segformer_mit_state([64, 128, 320, 512], [3, 6, 40, 3], [8, 4, 2, 1],
                              device='meta', with_head=False)
    assert len(src) == 1052  # SegFormer's mit_b5.pth without the classifier
    out = mit_tool.convert_mit(src)
    b5 = MixVisionTransformer(embed_dims=64, num_layers=[3, 6, 40, 3],
                              num_heads=[1, 2, 5, 8], drop_path_rate=0.1)
    ref = b5.state_dict()
    assert len(out) == len(ref) == 948
    assert set(out) == set(ref)
    assert all(tuple(out[k].shape) == tuple(ref[k].shape) for k in ref)


def test_converted_tiny_mit_computes_the_original_features():
    torch.manual_seed(0)
    src = segformer_mit_state(TINY['dims'], TINY['depths'], TINY['sr_ratios'])
    model = tiny_mmseg_mit().eval()
    missing, unexpected = model.load_state_dict(mit_tool.convert_mit(src), strict=True)
    assert not missing and not unexpected
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = model(x)
        ref = reference_mit_forward(src, x, TINY['dims'], TINY['depths'],
                                    TINY['heads'], TINY['sr_ratios'])
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_mit_tool_end_to_end_then_checked_load(tmp_path, capsys):
    src = segformer_mit_state(TINY['dims'], TINY['depths'], TINY['sr_ratios'])
    torch.save({'state_dict': src}, tmp_path / 'mit_tiny.pth')
    dst = tmp_path / 'out' / 'mit_tiny_mmseg.pth'
    assert mit_tool.main([str(tmp_path / 'mit_tiny.pth'), str(dst)]) == 0
    assert 'converted 122 tensors into 110 mmseg keys' in capsys.readouterr().out
    model = tiny_mmseg_mit()
    loaded, total = load_pretrained_checked(model, str(dst))
    assert loaded == total == len(model.state_dict())
    torch.testing.assert_close(model.layers[3][2].weight, src['norm4.weight'])


def test_mit_converter_rejects_unknown_layout():
    with pytest.raises(ValueError, match='unknown key'):
        mit_tool.convert_mit({'layers.0.0.projection.weight': torch.zeros(1)})
    src = segformer_mit_state(TINY['dims'], TINY['depths'], TINY['sr_ratios'])
    del src['block1.0.attn.kv.weight']
    with pytest.raises(ValueError, match='attn.q and attn.kv'):
        mit_tool.convert_mit(src)


def test_mit_unwrap_takes_backbone_of_a_segmentor_checkpoint():
    sd = {'module.backbone.norm1.weight': torch.ones(2),
          'module.decode_head.conv_seg.weight': torch.ones(2)}
    assert list(mit_tool.unwrap({'state_dict': sd})) == ['norm1.weight']


def tiny_resnet():
    return ResNetV1c(depth=18, base_channels=8, stem_channels=8,
                     dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1),
                     contract_dilation=True)


def test_resnet_v1c_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    src_model = tiny_resnet()
    for p in src_model.parameters():
        p.data.normal_()
    sd = {f'backbone.{k}': v for k, v in src_model.state_dict().items()}
    sd['fc.weight'], sd['fc.bias'] = torch.zeros(1000, 64), torch.zeros(1000)
    torch.save({'state_dict': sd, 'meta': {}}, tmp_path / 'r.pth')
    assert resnet_tool.main([str(tmp_path / 'r.pth'), str(tmp_path / 'rc.pth')]) == 0
    model = tiny_resnet()
    loaded, total = load_pretrained_checked(model, str(tmp_path / 'rc.pth'))
    assert loaded == total > 0
    for k, v in src_model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)


def test_resnet_single_stem_is_refused_unless_allowed():
    sd = {'conv1.weight': torch.zeros(64, 3, 7, 7), 'bn1.weight': torch.zeros(64),
          'layer1.0.conv1.weight': torch.zeros(64, 64, 1, 1),
          'fc.weight': torch.zeros(1000, 2048)}
    with pytest.raises(ValueError, match='resnet101_v1c'):
        resnet_tool.convert_resnet(sd)
    assert 'fc.weight' not in resnet_tool.convert_resnet(sd, allow_v1b=True)
    with pytest.raises(ValueError, match='unknown key'):
        resnet_tool.convert_resnet({'patch_embed1.proj.weight': torch.zeros(1)})


def test_unsafe_metadata_needs_trust_flag(tmp_path):
    import argparse
    src = tiny_resnet().state_dict()
    torch.save({'state_dict': src, 'meta': argparse.Namespace(a=1)},
               tmp_path / 'r.pth')
    args = [str(tmp_path / 'r.pth'), str(tmp_path / 'rc.pth')]
    with pytest.raises(SystemExit, match='--trust-file'):
        resnet_tool.main(args)
    assert resnet_tool.main(args + ['--trust-file']) == 0
    assert set(torch.load(tmp_path / 'rc.pth', weights_only=True)) == set(src)

"""Checked pretrained loading: counts, the error on silent misses (0 of N), partial
loading with min_fraction, prefixes, the missing-file message, and the
``CheckedPretrained`` init_cfg going through a segmentor's init_weights (MiT, ResNet)
so that the loaded values are the ones the model ends up with."""
import logging
import os.path as osp

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmseg.models.backbones import MixVisionTransformer
from mmseg.registry import MODELS

from mmseg_dida.models.utils.weight_loading import (
    CheckedPretrained,
    PretrainedLoadError,
    load_pretrained_checked,
)

MIT = dict(embed_dims=8, num_layers=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])


def random_mit(seed):
    torch.manual_seed(seed)
    m = MixVisionTransformer(**MIT)
    for p in m.parameters():
        p.data.normal_()
    return m


def save(tmp_path, state, name='ckpt.pth'):
    path = str(tmp_path / name)
    torch.save(state, path)
    return path


def test_full_load_counts_and_copies(tmp_path):
    src = random_mit(0)
    path = save(tmp_path, {'state_dict': src.state_dict()})
    dst = random_mit(1)
    loaded, total = load_pretrained_checked(dst, path)
    assert loaded == total == len(src.state_dict()) == 92
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k


def test_log_line_reports_n_of_m(tmp_path):
    src = random_mit(0)
    path = save(tmp_path, src.state_dict())
    messages = []
    logger = MMLogger.get_instance('test_weight_loading_log')

    class ListHandler(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = ListHandler()
    logger.addHandler(handler)
    try:
        load_pretrained_checked(random_mit(1), path, logger=logger)
    finally:
        logger.removeHandler(handler)
    assert any('loaded 92 of 92 parameters' in m for m in messages)


def test_unconverted_segformer_layout_is_an_error_naming_the_converter(tmp_path):
    sd = {'patch_embed1.proj.weight': torch.zeros(8, 3, 7, 7),
          'block1.0.attn.q.weight': torch.zeros(8, 8),
          'norm1.weight': torch.zeros(8)}
    path = save(tmp_path, sd)
    model = random_mit(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PretrainedLoadError,
                       match=r'loaded only 0 of 92[\s\S]*mit2mmseg_dida'):
        load_pretrained_checked(model, path)
    # nothing was half-loaded into the model silently
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_partial_load_and_shape_mismatch_with_min_fraction(tmp_path):
    src = random_mit(0).state_dict()
    keys = list(src)
    partial = {k: src[k] for k in keys[:60]}
    partial[keys[0]] = torch.zeros(3)  # wrong shape: counts as not loaded
    path = save(tmp_path, partial)
    with pytest.raises(PretrainedLoadError, match=r'loaded only 59 of 92[\s\S]*'
                                                  r'Shape mismatches \(1\)'):
        load_pretrained_checked(random_mit(1), path)
    loaded, total = load_pretrained_checked(random_mit(1), path, min_fraction=0.5)
    assert (loaded, total) == (59, 92)
    with pytest.raises(PretrainedLoadError, match='at least 60 required'):
        load_pretrained_checked(random_mit(1), path, min_fraction=0.65)


def test_prefix_selects_a_submodule(tmp_path):
    src = random_mit(0)
    sd = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    sd['decode_head.conv_seg.weight'] = torch.zeros(1)
    path = save(tmp_path, {'state_dict': sd})
    dst = random_mit(1)
    assert load_pretrained_checked(dst, path, prefix='backbone.') == (92, 92)
    assert torch.equal(dst.layers[0][2].weight, src.layers[0][2].weight)


def test_missing_file_says_which_file_and_how_to_get_it(tmp_path):
    missing = str(tmp_path / 'pretrained' / 'mit_b5_mmseg.pth')
    with pytest.raises(PretrainedLoadError) as err:
        load_pretrained_checked(random_mit(0), missing)
    msg = str(err.value)
    assert missing in msg
    assert 'tools/model_converters/mit2mmseg_dida.py' in msg
    assert 'tools/model_converters/resnet2mmseg.py' in msg


def test_invalid_min_fraction():
    with pytest.raises(ValueError, match='min_fraction'):
        CheckedPretrained(checkpoint='x.pth', min_fraction=0.0)


def _segmentor(backbone, last_channels=64):
    init_default_scope('mmseg')
    return MODELS.build(dict(
        type='EncoderDecoder', backbone=backbone,
        decode_head=dict(type='DLV2Head', in_channels=last_channels,
                         in_index=3, num_classes=2, dilations=(1,))))


def test_init_cfg_loads_mit_through_segmentor_init_weights(tmp_path):
    src = random_mit(0)
    path = save(tmp_path, src.state_dict())
    seg = _segmentor(dict(type='MixVisionTransformer', **MIT,
                          init_cfg=dict(type='CheckedPretrained', checkpoint=path)))
    seg.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(seg.backbone.state_dict()[k], v), k


def test_init_cfg_loads_resnet_through_segmentor_init_weights(tmp_path):
    """Children of ResNet run their own init after the backbone's init_cfg; the
    loaded values must survive."""
    cfg = dict(type='ResNetV1c', depth=18, base_channels=8, stem_channels=8,
               dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1), contract_dilation=True)
    init_default_scope('mmseg')
    src = MODELS.build(cfg)
    for p in src.parameters():
        p.data.normal_()
    for name, b in src.named_buffers():
        if 'running_var' in name:
            b.uniform_(0.5, 2.0)
    path = save(tmp_path, {'state_dict': src.state_dict()})
    seg = _segmentor(dict(cfg,
                          init_cfg=dict(type='CheckedPretrained', checkpoint=path)))
    seg.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(seg.backbone.state_dict()[k], v), k


def test_init_cfg_with_missing_file_fails_at_init(tmp_path):
    seg = _segmentor(dict(type='MixVisionTransformer', **MIT,
                          init_cfg=dict(type='CheckedPretrained',
                                        checkpoint=str(tmp_path / 'none.pth'))))
    with pytest.raises(PretrainedLoadError, match='none.pth'):
        seg.init_weights()


def test_model_configs_point_to_converted_files(repo_root):
    from mmengine.config import Config
    for name, ckpt in [('daformer_mitb5.py', 'pretrained/mit_b5_mmseg.pth'),
                       ('deeplabv2_r101.py', 'pretrained/resnet101_v1c_mmseg.pth')]:
        cfg = Config.fromfile(osp.join(repo_root, 'configs/_base_/models', name))
        assert cfg.model.backbone.init_cfg == dict(type='CheckedPretrained',
                                                   checkpoint=ckpt)

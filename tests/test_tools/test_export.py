"""tools/export.py: DAFormer and DAFormer+DiDA checkpoints -> the same plain segmentor."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[120.0] * 3,
                           std=[60.0] * 3, bgr_to_rgb=True, size=(32, 64)),
    backbone=dict(type='MixVisionTransformer', in_channels=3, embed_dims=8,
                  num_stages=4, num_layers=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                  patch_sizes=[7, 3, 3, 3], sr_ratios=[8, 4, 2, 1],
                  out_indices=(0, 1, 2, 3), mlp_ratio=2),
    decode_head=dict(type='WeightedSegformerHead', in_channels=[8, 8, 8, 8],
                     in_index=[0, 1, 2, 3], channels=8, num_classes=4,
                     loss_decode=dict(type='CrossEntropyLoss')),
    train_cfg=dict(), test_cfg=dict(mode='whole'))


def _tool():
    spec = importlib.util.spec_from_file_location('export_tool',
                                                  osp.join(REPO, 'tools/export.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def batch(seed):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)

    def packed(labelled):
        inputs, samples = [], []
        for _ in range(2):
            inputs.append(torch.randint(0, 256, (3, 32, 64), generator=g,
                                        dtype=torch.uint8))
            s = SegDataSample(metainfo=dict(img_shape=(32, 64), ori_shape=(32, 64),
                                            pad_shape=(32, 64)))
            if labelled:
                s.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, 32, 64),
                                                            generator=g))
            samples.append(s)
        return dict(inputs=inputs, data_samples=samples)

    return dict(source=packed(True), target=packed(False))


def _train_and_save(tmp_path, plugins, name):
    init_default_scope('mmseg')
    cfg = Config(dict(default_scope='mmseg',
                      model=dict(type='DACS', segmentor=SEG, plugins=plugins,
                                 pseudo_weight_ignore_top=0,
                                 pseudo_weight_ignore_bottom=0),
                      custom_hooks=[dict(type='DiDAHook')] if plugins else []))
    cfg_path = str(tmp_path / f'{name}.py')
    cfg.dump(cfg_path)
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(cfg.model))
    model.init_weights()
    model.train()
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    for it in range(2):
        model.train_step(batch(it), optim)
    ckpt = str(tmp_path / f'{name}.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    return cfg_path, ckpt, model


@pytest.mark.parametrize('plugins', [[], [dict(type='DiDA', recon_channels=8)]])
def test_export_matches_baseline_and_clean_predictions(tmp_path, plugins, capsys):
    tool = _tool()
    cfg_path, ckpt, model = _train_and_save(tmp_path, plugins, 'run')
    out = tmp_path / 'out'
    tool.main([cfg_path, ckpt, '--out-dir', str(out), '--verify'])
    printed = capsys.readouterr().out
    assert 'export verification passed' in printed
    assert 'max_abs_logit_diff=0.0' in printed
    state = torch.load(out / 'deploy.pth', weights_only=False)['state_dict']
    baseline = MODELS.build(ConfigDict(SEG))
    assert list(state) == list(baseline.state_dict())
    plain_cfg = Config.fromfile(str(out / 'deploy_config.py'))
    assert plain_cfg.model.type == 'EncoderDecoder'
    assert 'plugins' not in plain_cfg.model and plain_cfg.custom_hooks == []
    # the exported network is the training student's clean path, key by key
    student = model.student
    if plugins:
        assert all(torch.equal(state[f'backbone.{k}'], v) for k, v in
                   student.backbone.backbone.state_dict().items())
    n_train = sum(p.numel() for p in model.parameters())
    n_export = sum(v.numel() for k, v in state.items() if 'running' not in k
                   and 'num_batches' not in k)
    assert n_export < n_train

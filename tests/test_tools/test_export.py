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
from tests.helpers.uda import flat_segmentor, make_batch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG = flat_segmentor()


def _tool():
    spec = importlib.util.spec_from_file_location('export_tool',
                                                  osp.join(REPO, 'tools/export.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
        model.train_step(make_batch(size=(32, 64), seed=it), optim)
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

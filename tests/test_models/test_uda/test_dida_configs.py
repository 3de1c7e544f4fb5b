"""Every DiDA config: what it switches on, and each ablation row trains at toy size."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.optim import OptimWrapper

import mmseg_dida  # noqa: F401

from .test_dida import batch, build_from

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs/dida/**/*.py'), recursive=True))
ROWS = {  # ablation table of the paper (DAFormer, GTA->CS): (mode, recon, L_R on)
    '1_ld_only': ('none', None, False),
    '2_g_time': ('g_time', None, False),
    '3_lr': ('g_time', 'linear', True),
    '4_h': ('g_time', 'full', True),
    '5_full': ('full', 'full', True),
}


def row_plugin(path):
    """The DiDA plug-in config of an ablation row, as the runner would see it."""
    return Config.fromfile(path).model.plugins[0]


def test_configs_exist():
    names = {osp.basename(p) for p in CONFIGS}
    for arch in ('mitb5', 'dlv2'):
        for pair in ('gta2cs', 'synthia2cs', 'cs2acdc'):
            assert f'daformer_{arch}_{pair}_dida.py' in names
    assert 'daformer_mit_tiny_procedural_dida.py' in names
    assert len([n for n in names if n.startswith('daformer_mitb5_gta2cs_dida_')]) == 5


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.basename(p))
def test_config_resolves(path):
    cfg = Config.fromfile(path)
    assert cfg.model.type == 'DACS'
    plugins = [p for p in cfg.model.plugins if p.type == 'DiDA']
    assert len(plugins) == 1
    assert any(h.type == 'DiDAHook' for h in cfg.custom_hooks)
    lambda_r = plugins[0].get('lambda_r', 5.0)
    if 'dlv2' in path:
        assert lambda_r == 1.0
    elif 'ablation' not in path or ROWS[path.split('_dida_')[-1][:-3]][2]:
        assert lambda_r == 5.0


@pytest.mark.parametrize('row', list(ROWS))
def test_ablation_row_builds_and_trains(row):
    path = osp.join(REPO, f'configs/dida/ablation/daformer_mitb5_gta2cs_dida_{row}.py')
    plugin = ConfigDict(row_plugin(path))
    mode, recon, with_lr = ROWS[row]
    assert plugin.mode == mode and plugin.recon == recon
    assert (plugin.lambda_r > 0) == with_lr and plugin.lambda_d == 0.5
    plugin.recon_channels = 8
    model = build_from(plugin)
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    params0 = [p.clone() for p in model.student.parameters()]
    for it in range(2):
        log = model.train_step(batch(it), optim)
    assert ('loss_recon' in log) == with_lr
    assert torch.isfinite(log['loss_dic_src']) and torch.isfinite(log['loss_dic_tgt'])
    assert any(not torch.equal(a, b) for a, b in zip(params0,
                                                      model.student.parameters()))
    enc = model.student.backbone
    assert hasattr(enc, 'g_prime') == (mode == 'full')

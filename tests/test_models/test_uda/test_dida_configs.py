"""Every DiDA config: what it switches on, and each ablation row trains at toy size."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.optim import OptimWrapper

import mmseg_dida  # noqa: F401
from tests.helpers.configs import flat
from tests.helpers.uda import build_dacs

from .test_dida import SEGMENTOR, batch

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
    assert len([n for n in names
                if n.startswith('daformer_mit_tiny_procedural_dida_')]) == 4 + len(
                    VARIANTS)


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
    elif 'variants' not in path:
        assert lambda_r == 5.0
    # the paper's maths unless a variant says otherwise
    if 'variants' not in path:
        assert plugins[0].degradation.noise_downsample == 1
        assert not plugins[0].get('update_norm_stats', False)
    # MiT-B5 at the paper's crops takes the fastest mode that fits the card (HRDA/MIC
    # + DiDA start on 24 GB); the BatchNorm DeepLabV2 and the CPU-sized procedural
    # configs keep one batched pass
    name = osp.basename(path)
    expected = 'auto' if '_mitb5_' in name else 'none'
    assert plugins[0].memory_saving == expected, name
    # a mode that may split the domains into two passes normalises per domain, so
    # that every mode computes the same losses (DAFormer's head has BatchNorm)
    norm = 'per_domain' if ('_mitb5_' in name or 'per_domain_norm' in name) else 'joint'
    assert plugins[0].degraded_norm == norm, name


PROCEDURAL = osp.join(REPO, 'configs/dida/daformer_mit_tiny_procedural_dida.py')
VARIANTS = {  # variant -> the plug-in options it changes (nothing else may differ)
    'noise_lowres': {'degradation.noise_downsample': 4},
    'update_norm_stats': {'update_norm_stats': True,
                          'degradation.noise_downsample': 4},
    'zero_compensation': {'compensation_init': 'zero'},
    'lambda_r1': {'lambda_r': 1.0},
    'no_recon': {'recon': None},
    'ld_abar': {'ld_t_weight': 'abar'},
    'ld_max_t50': {'ld_max_t': 50},
    'time_seg_path': {'seg_path': 'time_conditioned'},
    'loss_balance': {'lambda_d': 1 / 3, 'lambda_r': 40 / 3},
    'degraded_fd': {'degraded_fd_weight': 0.005, 'degraded_fd_reference': 'clean'},
    # issue 28's readings
    'g_block_time': {'g_block_time': True},
    'g_block_time_no_g_prime': {'g_block_time': True, 'mode': 'none'},
    'per_domain_norm': {'degraded_norm': 'per_domain'},
    'recon_zero_init': {'recon_init': 'zero'},
    'recon_unit_target': {'recon_target': 'unit_variance'},
    't_per_domain': {'degradation.share_t': False},
    'ld_abar_target': {'ld_t_weight': 'abar', 'ld_t_weight_on': 'target'},
}


def _plugin_diff(path):
    base = flat(row_plugin(PROCEDURAL).to_dict())
    other = flat(row_plugin(path).to_dict())
    return {k: other.get(k) for k in set(base) | set(other)
            if base.get(k) != other.get(k)}


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_procedural_variant_changes_only_its_options(name):
    path = osp.join(REPO, 'configs/dida/variants',
                    f'daformer_mit_tiny_procedural_dida_{name}.py')
    assert _plugin_diff(path) == VARIANTS[name]
    assert Config.fromfile(path).custom_hooks == Config.fromfile(
        PROCEDURAL).custom_hooks


@pytest.mark.parametrize('row', [r for r in ROWS if r != '5_full'])
def test_procedural_ablation_rows_match_the_paper_rows(row):
    path = osp.join(REPO, 'configs/dida/ablation',
                    f'daformer_mit_tiny_procedural_dida_{row}.py')
    mode, recon, _ = ROWS[row]
    expect = {}
    if mode != 'full':
        expect['mode'] = mode
    if recon != 'full':
        expect['recon'] = recon
    assert _plugin_diff(path) == expect


@pytest.mark.parametrize('row', list(ROWS))
def test_ablation_row_builds_and_trains(row):
    path = osp.join(REPO, f'configs/dida/ablation/daformer_mitb5_gta2cs_dida_{row}.py')
    plugin = ConfigDict(row_plugin(path))
    mode, recon, with_lr = ROWS[row]
    assert plugin.mode == mode and plugin.recon == recon
    assert (plugin.recon is not None) == with_lr and plugin.lambda_d == 0.5
    plugin.recon_channels = 8
    model = build_dacs(ConfigDict(SEGMENTOR), [plugin], imnet_feature_dist_lambda=0.0,
                       pseudo_weight_ignore_top=0, pseudo_weight_ignore_bottom=0)
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


HRDA_PROCEDURAL = osp.join(REPO, 'configs/dida/hrda_mit_tiny_procedural_dida.py')
HRDA_VARIANTS = {  # issue 17's HRDA + DiDA variants -> the options they change
    'no_att_grad': {'degraded_frozen_modules': ['decode_head.scale_attention']},
    'ld_lr_only': {'ld_scale_weights.lr': 1.0},
    'ld_max_t50': {'ld_max_t': 50},
    'no_recon': {'recon': None},
    'noise_per_view': {'noise_per_view': True},
}


@pytest.mark.parametrize('name', sorted(HRDA_VARIANTS))
def test_hrda_variant_changes_only_its_options(name):
    path = osp.join(REPO, 'configs/dida/variants',
                    f'hrda_mit_tiny_procedural_dida_{name}.py')
    base = flat(row_plugin(HRDA_PROCEDURAL).to_dict())
    other = flat(row_plugin(path).to_dict())
    diff = {k: other.get(k) for k in set(base) | set(other)
            if base.get(k) != other.get(k)}
    assert diff == HRDA_VARIANTS[name]
    cfg, ref = Config.fromfile(path), Config.fromfile(HRDA_PROCEDURAL)
    assert cfg.custom_hooks == ref.custom_hooks
    assert cfg.model.segmentor == ref.model.segmentor


@pytest.mark.parametrize('name, change', [
    ('keep_norm', {'update_norm_stats': False}), ('block32', {'mask_block_size': 32})])
def test_mic_variant_changes_only_its_options(name, change):
    base = Config.fromfile(osp.join(REPO, 'configs/benchmark/'
                                    'mic_hrda_mit_tiny_procedural.py'))
    cfg = Config.fromfile(osp.join(REPO, 'configs/benchmark/variants/'
                                   f'mic_hrda_mit_tiny_procedural_{name}.py'))
    assert len(cfg.model.plugins) == 1
    assert cfg.model.plugins[0].to_dict() == {**base.model.plugins[0].to_dict(),
                                               **change}
    assert cfg.model.segmentor == base.model.segmentor

"""The paper's table: every cell has a config (DAFormer/HRDA/MIC x {+DiDA} x five
benchmarks); the HRDA/MIC configs hold the original values, each builds, and each
family trains at toy size (real-data configs shrunk; the procedural ones in the
Runner)."""
import copy
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.models.segmentors import HRDAEncoderDecoder
from tests.helpers.uda import make_batch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
BENCHMARKS = {  # paper column -> (architecture, benchmark)
    'GTA->CS CNN': ('dlv2', 'gta2cs'), 'GTA->CS MiT-B5': ('mitb5', 'gta2cs'),
    'SYN->CS CNN': ('dlv2', 'synthia2cs'), 'SYN->CS MiT-B5': ('mitb5', 'synthia2cs'),
    'CS->ACDC MiT-B5': ('mitb5', 'cs2acdc'),
}
METHODS = {'DAFormer': 'daformer/daformer', 'HRDA': 'hrda/hrda',
           'MIC': 'mic/mic_hrda'}


def table_configs():
    """(method, DiDA?, column, path) of the paper's 30 cells."""
    cells = []
    for method, stem in METHODS.items():
        for column, (arch, bench) in BENCHMARKS.items():
            base = f'configs/{stem}_{arch}_{bench}.py'
            dida = 'configs/dida/' + osp.basename(base)[:-3] + '_dida.py'
            cells += [(method, False, column, base), (method, True, column, dida)]
    return cells


CELLS = table_configs()
NEW = [c for c in CELLS if c[0] != 'DAFormer']


def test_every_cell_of_the_table_has_a_config():
    assert len(CELLS) == 30
    missing = [path for *_, path in CELLS if not osp.isfile(osp.join(REPO, path))]
    assert missing == []


def _plugins(cfg, kind):
    return [p for p in cfg.model.plugins if p.type == kind]


@pytest.mark.parametrize('cell', NEW, ids=lambda c: osp.basename(c[3]))
def test_hrda_and_mic_config_values(cell):
    method, with_dida, column, path = cell
    cfg = Config.fromfile(osp.join(REPO, path))
    m, seg = cfg.model, cfg.model.segmentor
    assert m.type == 'DACS' and seg.type == 'HRDAEncoderDecoder'
    assert (m.alpha, m.pseudo_threshold, m.imnet_feature_dist_lambda) == (0.999, 0.968,
                                                                         0.005)
    assert (m.pseudo_weight_ignore_top, m.pseudo_weight_ignore_bottom) == (0, 0)
    assert cfg.train_dataloader.dataset.rare_class_sampling == dict(
        class_temp=0.01, min_pixels=3000, min_crop_ratio=2.0)
    assert cfg.randomness.seed == {'HRDA': 1, 'MIC': 2}[method]
    assert (seg.scales, seg.hr_crop_size, seg.feature_scale) == ((0.5, 1.0), (512, 512),
                                                                 0.5)
    head = seg.decode_head
    assert head.type == 'HRDAHead' and head.attention_classwise
    assert (head.hr_loss_weight, head.lr_loss_weight) == (0.1, 0.0)
    cnn = 'CNN' in column
    assert head.single_scale_head.type == ('DLV2Head' if cnn else 'DAFormerHead')
    assert seg.crop_coord_divisible == (16 if cnn else 8)
    assert seg.test_cfg == (dict(mode='whole') if cnn else dict(
        mode='slide', batched_slide=True, stride=(512, 512), crop_size=(1024, 1024)))
    mic = _plugins(cfg, 'MIC')
    assert len(mic) == (method == 'MIC')
    if mic:
        assert (mic[0].mask_ratio, mic[0].mask_block_size, mic[0].loss_weight) == (
            0.7, 64, 1.0)
        acdc = column == 'CS->ACDC MiT-B5'
        assert mic[0].images == ('source_and_target' if acdc else 'target')
        assert mic[0].color_augmentation == (not acdc)
    dida = _plugins(cfg, 'DiDA')
    assert len(dida) == with_dida
    if dida:
        assert dida[0].lambda_r == (1.0 if cnn else 5.0) and dida[0].lambda_d == 0.5
        assert cfg.model.plugins[-1].type == 'DiDA'  # after MIC
        hooks = [h for h in cfg.custom_hooks if h.type == 'DiDAHook']
        assert len(hooks) == 1 and hooks[0].diag_interval == 0
    # every UDA config keeps the pictures of its steps (UDAVisualizationHook)
    assert [h.type for h in cfg.custom_hooks].count('UDAVisualizationHook') == 1
    targets = cfg.train_dataloader.dataset.target.pipeline
    has_margins = any(t.type == 'GenerateValidPseudoMask' for t in targets)
    assert has_margins == ('CS->ACDC' not in column)


def _shrink(seg):
    """A toy-size segmentor config of a table config (no pretrained files)."""
    seg = copy.deepcopy(seg)
    seg.data_preprocessor.size = (64, 64)
    seg.backbone.pop('init_cfg', None)
    hrda = seg.type == 'HRDAEncoderDecoder'
    head = seg.decode_head.single_scale_head if hrda else seg.decode_head
    if hrda:
        seg.hr_crop_size = (32, 32)
        seg.decode_head.attention_embed_dim = 8
    if seg.backbone.type == 'MixVisionTransformer':
        seg.backbone.update(embed_dims=8, num_layers=[1, 1, 1, 1])
        head.update(in_channels=[8, 16, 40, 64], embed_dims=16, channels=16)
    else:
        seg.backbone.depth = 18
        head.in_channels = 512
    return seg


def _toy(path):
    cfg = Config.fromfile(osp.join(REPO, path))
    cfg.model.segmentor = _shrink(cfg.model.segmentor)
    cfg.model.imnet_feature_dist_classes = [1, 2]
    cfg.model.pseudo_threshold = 0.06
    for plugin in cfg.model.plugins:
        if plugin.type == 'MIC':
            plugin.mask_block_size = 16
        if plugin.type == 'DiDA':
            plugin.recon_channels = 8
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    return cfg, model


@pytest.mark.parametrize('cell', CELLS, ids=lambda c: osp.basename(c[3]))
def test_every_table_config_builds(cell):
    method, with_dida, _, path = cell
    _, model = _toy(path)
    assert isinstance(model.student, HRDAEncoderDecoder) == (method != 'DAFormer')
    assert type(model.imnet_model) is type(model.student)
    assert [type(p).__name__ for p in model.plugins] == (
        ['MIC'] * (method == 'MIC') + ['DiDA'] * with_dida)


@pytest.mark.parametrize('name', ['hrda/hrda_mitb5_gta2cs', 'mic/mic_hrda_dlv2_gta2cs',
                                  'dida/hrda_mitb5_cs2acdc_dida',
                                  'dida/mic_hrda_mitb5_synthia2cs_dida'])
def test_config_family_trains_at_toy_size(name):
    cfg, model = _toy(f'configs/{name}.py')
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    lr = {id(p): g['lr'] for g in optim.optimizer.param_groups for p in g['params']}
    att = next(model.student.decode_head.scale_attention.parameters())
    stem = next(model.student.backbone.parameters())
    assert lr[id(att)] == pytest.approx(10 * lr[id(stem)])  # the heads' lr x 10
    before = [p.detach().clone() for p in model.student.parameters()]
    for it in range(2):
        log = model.train_step(make_batch(num_classes=19, seed=it), optim)
        assert all(torch.isfinite(torch.as_tensor(v)) for v in log.values())
    for key in ('src.decode.loss_ce', 'src.decode.hr.loss_ce', 'mix.decode.loss_ce',
                'src.loss_imnet_feat_dist'):
        assert key in log, key
    assert ('masked.decode.loss_ce' in log) == ('mic' in name)
    assert ('loss_dic_src' in log) == ('dida' in name)
    moved = sum(not torch.equal(a, b) for a, b in zip(before,
                                                        model.student.parameters()))
    assert moved > 0.9 * len(before)


PROCEDURAL = ['configs/benchmark/hrda_mit_tiny_procedural.py',
              'configs/dida/mic_hrda_mit_tiny_procedural_dida.py']


def _runner_cfg(path, work_dir):
    cfg = Config.fromfile(osp.join(REPO, path))
    cfg.work_dir = str(work_dir)
    # the tiny benchmark is 128x64: twice that, as the config does with 256x128
    resize = dict(type='Resize', scale=(256, 128), keep_ratio=True)
    cfg.train_dataloader.dataset.source.pipeline[2] = resize
    cfg.train_dataloader.dataset.target.pipeline[1] = resize
    seg = cfg.model.segmentor
    seg.data_preprocessor.size = (128, 256)
    seg.hr_crop_size = (64, 128)
    cfg.train_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.train_cfg.update(max_iters=2, val_interval=1000)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint.interval = 2
    cfg.default_hooks.visualization = dict(type='SegVisualizationHook', draw=False)
    cfg.custom_hooks = [dict(h, save_deploy=False) if h.type == 'DiDAHook' else h
                        for h in cfg.get('custom_hooks', [])]
    cfg.log_level = 'WARNING'
    return cfg


@pytest.mark.parametrize('path', PROCEDURAL, ids=osp.basename)
def test_procedural_configs_train_in_the_runner(path, tiny_benchmark, tmp_path,
                                                cpu_only):
    cfg = Config.fromfile(osp.join(REPO, path))
    seg = cfg.model.segmentor
    assert seg.hr_crop_size == (128, 256) and seg.data_preprocessor.size == (256, 512)
    assert cfg.randomness.seed == 0
    cwd = os.getcwd()
    os.chdir(tiny_benchmark)
    try:
        runner = Runner.from_cfg(_runner_cfg(path, tmp_path))
        runner.train()
    finally:
        os.chdir(cwd)
    assert int(runner.model.local_iter) == 2
    assert (tmp_path / 'iter_2.pth').is_file()

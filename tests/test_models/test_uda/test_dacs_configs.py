"""The DAFormer/DACS configs: paper values, and each family trains at toy size."""
import copy
import glob
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.apis.config_errors import explain_build_error
from tests.helpers.uda import make_batch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
DAFORMER = sorted(glob.glob(osp.join(REPO, 'configs/daformer/*.py')))
BENCHMARK = osp.join(REPO, 'configs/benchmark/daformer_mit_tiny_procedural.py')
THINGS = [6, 7, 11, 12, 13, 14, 15, 16, 17, 18]


def test_every_benchmark_and_architecture_has_a_config():
    names = {osp.basename(p)[:-3] for p in DAFORMER}
    for kind in ('daformer', 'source_only'):
        for arch in ('mitb5', 'dlv2'):
            for pair in ('gta2cs', 'synthia2cs', 'cs2acdc'):
                assert f'{kind}_{arch}_{pair}' in names


@pytest.mark.parametrize('path', DAFORMER + [BENCHMARK], ids=osp.basename)
def test_config_values(path):
    cfg = Config.fromfile(path)
    m = cfg.model
    name = osp.basename(path)
    assert m.type == 'DACS' and m.segmentor.type == 'EncoderDecoder'
    assert (m.alpha, m.pseudo_threshold) == (0.999, 0.968) and 'mix' not in m
    assert (m.color_jitter_strength, m.color_jitter_probability, m.blur) == (0.2, 0.2,
                                                                            True)
    assert cfg.model_wrapper_cfg.type == 'UDADistributedWrapper'
    assert m.plugins == []
    rcs = cfg.train_dataloader.dataset.get('rare_class_sampling')
    if name.startswith('source_only'):
        assert m.source_only and m.imnet_feature_dist_lambda == 0 and rcs is None
    elif 'procedural' in name:
        assert not m.source_only and m.imnet_feature_dist_lambda == 0
        assert cfg.sync_bn is None and cfg.train_dataloader.batch_size == 2
    else:
        assert not m.source_only and m.imnet_feature_dist_lambda == 0.005
        assert m.imnet_feature_dist_classes == THINGS
        assert m.imnet_feature_dist_scale_min_ratio == 0.75
        assert rcs == dict(class_temp=0.01, min_pixels=3000, min_crop_ratio=0.5)
        assert cfg.sync_bn == 'torch' and cfg.randomness.seed == 0
    top_bottom = (m.pseudo_weight_ignore_top, m.pseudo_weight_ignore_bottom)
    expected = (15, 120) if ('gta' in name or 'synthia' in name) else (0, 0)
    assert top_bottom == expected
    head = m.segmentor.decode_head.type
    assert head == {'mitb5': 'DAFormerHead', 'dlv2': 'DLV2Head'}.get(
        name.split('_')[-2], 'WeightedSegformerHead')


def test_config_with_the_removed_mix_key_fails_in_one_line():
    """DACS lost its ``mix`` argument (ClassMix was its only mixing): a config that
    still sets it is refused with one line naming the key."""
    cfg = Config.fromfile(BENCHMARK)
    cfg.model.mix = 'class'
    init_default_scope('mmseg')
    with pytest.raises(TypeError) as err:
        MODELS.build(cfg.model)
    line = explain_build_error(cfg, err.value)
    assert line.startswith("model.mix: DACS has no argument 'mix' (it takes segmentor, "
                           'plugins, '), line
    assert '\n' not in line


def _shrink(seg):
    """Toy-size version of a real-data segmentor config (no pretrained files)."""
    seg = copy.deepcopy(seg)
    seg.data_preprocessor.size = (64, 64)
    seg.backbone.pop('init_cfg', None)
    head = seg.decode_head
    if seg.backbone.type == 'MixVisionTransformer':
        seg.backbone.update(embed_dims=8, num_layers=[1, 1, 1, 1])
        head.update(in_channels=[8, 16, 40, 64], embed_dims=16, channels=16)
    else:
        seg.backbone.depth = 18
        head.in_channels = 512
    return seg


@pytest.mark.parametrize('name', ['daformer_mitb5_gta2cs', 'daformer_dlv2_cs2acdc',
                                  'source_only_mitb5_synthia2cs'])
def test_config_family_trains_at_toy_size(name):
    cfg = Config.fromfile(osp.join(REPO, f'configs/daformer/{name}.py'))
    cfg.model.segmentor = _shrink(cfg.model.segmentor)
    cfg.model.imnet_feature_dist_classes = [1, 2] if cfg.model.imnet_feature_dist_lambda \
        else None
    cfg.model.pseudo_weight_ignore_top = min(cfg.model.pseudo_weight_ignore_top, 4)
    cfg.model.pseudo_weight_ignore_bottom = min(cfg.model.pseudo_weight_ignore_bottom, 8)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    # The config's paramwise rules reach the student under its new prefix.
    lr = {id(p): g['lr'] for g in optim.optimizer.param_groups for p in g['params']}
    head_p = next(model.student.decode_head.parameters())
    stem_p = next(model.student.backbone.parameters())
    assert lr[id(head_p)] == pytest.approx(10 * lr[id(stem_p)])
    before = [p.detach().clone() for p in model.student.parameters()]
    for it in range(2):
        log = model.train_step(make_batch(num_classes=19, seed=it), optim)
        assert all(torch.isfinite(torch.as_tensor(v)) for v in log.values())
    assert ('mix.decode.loss_ce' in log) != cfg.model.source_only
    assert ('src.loss_imnet_feat_dist' in log) == (not cfg.model.source_only)
    moved = sum(not torch.equal(a, b) for a, b in zip(before,
                                                        model.student.parameters()))
    assert moved > 0.9 * len(before)
    assert int(model.local_iter) == 2


def _runner_cfg(work_dir, max_iters, resume):
    cfg = Config.fromfile(BENCHMARK)
    cfg.work_dir = str(work_dir)
    cfg.model.segmentor.data_preprocessor.size = (64, 128)
    cfg.train_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.train_cfg.update(max_iters=max_iters, val_interval=1000)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint.interval = 2
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.visualization = dict(type='SegVisualizationHook', draw=False)
    cfg.log_level = 'WARNING'
    cfg.resume = resume
    return cfg


def test_benchmark_config_trains_and_resumes_in_the_runner(tiny_benchmark, tmp_path,
                                                          cpu_only):
    cwd = os.getcwd()
    os.chdir(tiny_benchmark)
    try:
        runner = Runner.from_cfg(_runner_cfg(tmp_path, 2, False))
        runner.train()
        first = torch.load(tmp_path / 'iter_2.pth', weights_only=False)['state_dict']
        assert int(first['local_iter']) == 2
        runner = Runner.from_cfg(_runner_cfg(tmp_path, 3, True))
        runner.train()
    finally:
        os.chdir(cwd)
    model = runner.model
    assert runner.iter == 3 and int(model.local_iter) == 3
    # The teacher resumed from the checkpoint and took one more EMA step (alpha_2 =
    # 2/3) towards the resumed student, which then took one optimiser step.
    t2 = {k[len('teacher.model.'):]: v for k, v in first.items()
          if k.startswith('teacher.model.')}
    s2 = {k[len('student.'):]: v for k, v in first.items() if k.startswith('student.')}
    for name, p in model.teacher.model.named_parameters():
        assert torch.allclose(p, 2 / 3 * t2[name] + 1 / 3 * s2[name], atol=1e-6)

"""DAFormer's optimiser and LR schedule (configs/_base_/schedules/adamw_poly10warm_40k.py).

The original (mmcv 1.x ``lr_config=dict(policy='poly', power=1.0, min_lr=0,
warmup='linear', warmup_iters=1500, warmup_ratio=1e-6)``, PolyLrUpdaterHook) sets at
runner iteration ``it`` (0-based, before the step):

    lr(it) = base * (1 - it / 40000) ** 1.0 * w(it),
    w(it)  = 1 - (1 - it / 1500) * (1 - 1e-6)   for it < 1500, else 1

(get_warmup_lr: k = (1 - it / warmup_iters) * (1 - ratio); lr = regular_lr * (1 - k)).
Here the mmengine schedulers are stepped once per iteration after it, as
ParamSchedulerHook does, and compared with that formula.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS, init_default_scope
from mmseg.registry import MODELS
from torch import nn

BASE_LR = 6e-5
MAX_ITERS, WARMUP, RATIO = 40000, 1500, 1e-6


def original_lr(it, base=BASE_LR):
    warm = 1 - (1 - it / WARMUP) * (1 - RATIO) if it < WARMUP else 1.0
    return base * (1 - it / MAX_ITERS)**1.0 * warm


@pytest.fixture(scope='module')
def cfg(repo_root):
    init_default_scope('mmseg')
    return Config.fromfile(
        osp.join(repo_root, 'configs/_base_/schedules/adamw_poly10warm_40k.py'))


@pytest.fixture(scope='module')
def segmentor(repo_root):
    init_default_scope('mmseg')
    model_cfg = Config.fromfile(
        osp.join(repo_root, 'configs/_base_/models/daformer_mitb5.py')).model
    model_cfg.backbone.init_cfg = None
    model_cfg.backbone.num_layers = [1, 1, 2, 1]  # MiT-B5 widths, fewer blocks
    model_cfg.decode_head.embed_dims = 32
    model_cfg.decode_head.channels = 32
    return MODELS.build(model_cfg)


def lr_trace(cfg, model, iters):
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    scheds = [PARAM_SCHEDULERS.build(dict(s, optimizer=optim))
              for s in cfg.param_scheduler]
    trace = {}
    wanted = set(iters)
    for it in range(max(iters) + 1):
        if it in wanted:
            trace[it] = [g['lr'] for g in optim.param_groups]
        for s in scheds:  # ParamSchedulerHook.after_train_iter
            s.step()
    return optim, trace


def test_lr_matches_the_original_formula(cfg):
    model = nn.Sequential()
    model.backbone = nn.Linear(2, 2)
    model.decode_head = nn.Linear(2, 2)
    iters = list(range(0, 40000, 250)) + [1, 749, 1499, 1501, 39999]
    optim, trace = lr_trace(cfg, model, iters)
    mults = [10.0 if any('head' in n for n, p in model.named_parameters()
                         if p is g['params'][0]) else 1.0
             for g in optim.param_groups]
    assert sorted(set(mults)) == [1.0, 10.0]
    known = {0: 6e-11, 750: 6e-5 * 0.98125 * 0.5000005, 1500: 6e-5 * 0.9625,
             20000: 3e-5}
    for it in iters:
        for lr, mult in zip(trace[it], mults):
            assert lr == pytest.approx(original_lr(it, BASE_LR * mult), rel=1e-9)
            if it in known:
                assert lr == pytest.approx(known[it] * mult, rel=1e-9)


def test_sequential_form_would_differ(cfg):
    """mmseg's usual form (poly begins after warmup) is not the original: ~4% off."""
    seq = cfg.copy()
    seq.param_scheduler = [cfg.param_scheduler[0],
                           dict(cfg.param_scheduler[1], begin=WARMUP)]
    _, trace = lr_trace(seq, nn.Linear(2, 2), [20000])
    assert trace[20000][0] / original_lr(20000) == pytest.approx(
        (1 - 18500 / 38500) / 0.5, rel=1e-9)
    assert abs(trace[20000][0] / original_lr(20000) - 1) > 0.03


def _groups_by_param(optim):
    out = {}
    for g in optim.param_groups:
        for p in g['params']:
            out[id(p)] = g
    return out


@pytest.mark.parametrize('wrap', [False, True], ids=['segmentor', 'uda_wrapper'])
def test_param_groups_head_lr_and_norm_decay(cfg, segmentor, wrap):
    """Every LayerNorm of mmseg's MiT (norm1/norm2/attn.norm/patch-embed norm and the
    stage norms layers.i.2) gets no weight decay; the decode head gets lr x10; all
    other backbone tensors keep lr and decay. Names prefixed as in a UDA model
    (student.*, teacher.*) match the same way."""
    model = segmentor
    if wrap:
        model = nn.Module()
        model.student = segmentor
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    groups = _groups_by_param(optim)
    norm_params = {id(p) for m in segmentor.backbone.modules()
                   if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    stage_norms = {id(p) for i in range(4)
                   for p in segmentor.backbone.layers[i][2].parameters()}
    # 4 patch-embed norms + 4 stage norms + norm1/norm2 of 5 blocks + attn.norm of the
    # 4 blocks with spatial reduction (stages 1-3), weight and bias each
    assert stage_norms <= norm_params and len(norm_params) == 2 * (4 + 4 + 10 + 4)
    for name, p in segmentor.backbone.named_parameters():
        g = groups[id(p)]
        assert g['lr'] == pytest.approx(BASE_LR), name
        expected_wd = 0.0 if id(p) in norm_params else 0.01
        assert g['weight_decay'] == pytest.approx(expected_wd), name
    for name, p in segmentor.decode_head.named_parameters():
        g = groups[id(p)]
        assert g['lr'] == pytest.approx(10 * BASE_LR), name
        assert g['weight_decay'] == pytest.approx(0.01), name
    assert isinstance(optim.optimizer, torch.optim.AdamW)
    assert optim.optimizer.defaults['betas'] == (0.9, 0.999)


def test_loop_and_checkpoint_settings(cfg):
    assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=40000,
                                 val_interval=4000)
    ckpt = cfg.default_hooks.checkpoint
    assert (ckpt.interval, ckpt.max_keep_ckpts, ckpt.by_epoch) == (4000, 1, False)
    assert [s.end for s in cfg.param_scheduler] == [1501, 40001]
    assert all(s.begin == 0 and not s.by_epoch for s in cfg.param_scheduler)

"""DiDAHook: g' initialisation only at iteration 0, x_t strips, deployable export."""
import copy
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from mmseg.registry import HOOKS, MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.engine.hooks.dida_hook import degradation_strip, degraded_path_stats
from mmseg_dida.models.backbones import DiffusionEncoder
from mmseg_dida.models.utils import norm_buffers
from tests.helpers.uda import flat_segmentor

SEG = flat_segmentor()


class FakeVis:
    def __init__(self):
        self.images = {}

    def add_image(self, name, image, step):
        self.images[(name, step)] = image

    def add_scalars(self, scalars, step):
        self.scalars = getattr(self, 'scalars', {})
        self.scalars[step] = scalars


def make_runner(tmp_path, it=0):
    init_default_scope('mmseg')
    cfg = Config(dict(model=dict(type='DACS', segmentor=SEG,
                                 imnet_feature_dist_lambda=0.0,
                                 plugins=[dict(type='DiDA', recon_channels=8)]),
                      custom_hooks=[dict(type='DiDAHook')]))
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(copy.deepcopy(cfg.model)))
    return SimpleNamespace(model=model, iter=it, cfg=cfg, work_dir=str(tmp_path),
                           logger=logging.getLogger('test_dida_hook'),
                           visualizer=FakeVis())


def test_before_train_syncs_g_prime_only_at_iteration_zero(tmp_path):
    hook = HOOKS.build(dict(type='DiDAHook'))
    runner = make_runner(tmp_path)
    enc = runner.model.student.backbone
    with torch.no_grad():  # as if g had loaded pretrained weights after the copy
        for p in enc.backbone.parameters():
            p.add_(1.0)
    resumed = make_runner(tmp_path, it=100)
    rs = resumed.model.student.backbone
    with torch.no_grad():
        for p in rs.backbone.parameters():
            p.add_(1.0)
    gp_before = [p.clone() for p in rs.g_prime.parameters()]
    hook.before_train(resumed)  # resumed run: g' must keep its trained weights
    assert all(torch.equal(a, b) for a, b in zip(gp_before, rs.g_prime.parameters()))
    hook.before_train(runner)
    assert all(torch.equal(p, q) for p, q in zip(enc.backbone.parameters(),
                                                  enc.g_prime.parameters()))
    assert not isinstance(runner.model.teacher_model.backbone, DiffusionEncoder)


def test_degradation_strip_values():
    runner_plugin = MODELS.build(dict(type='DiDA'))
    mean = torch.tensor([100.0, 110.0, 120.0])
    std = torch.tensor([50.0, 55.0, 60.0])
    img = torch.zeros(3, 16, 16)  # normalised zeros -> the mean colour
    strip = degradation_strip(runner_plugin, img, mean, std, (0, 49, 99))
    assert strip.shape == (16, 48, 3) and strip.dtype == np.uint8
    # spread around the mean grows with t (sqrt(1 - abar_t) eps)
    spread = [strip[:, 16 * k:16 * (k + 1)].astype(float).std() for k in range(3)]
    assert spread[0] < spread[1] < spread[2]


def test_after_train_iter_writes_strip_and_after_train_exports(tmp_path):
    hook = HOOKS.build(dict(type='DiDAHook', vis_interval=2))
    runner = make_runner(tmp_path, it=1)
    data = dict(source=dict(inputs=[torch.randint(0, 255, (3, 32, 64),
                                                  dtype=torch.uint8)]))
    hook.after_train_iter(runner, 0, data_batch=data)
    assert runner.visualizer.images[('dida_x_t', 2)].shape == (32, 64 * 5, 3)
    runner.iter = 2
    hook.after_train_iter(runner, 0, data_batch=data)
    assert ('dida_x_t', 3) not in runner.visualizer.images
    hook.after_train(runner)
    ckpt = torch.load(tmp_path / 'deploy.pth', weights_only=False)
    plain_cfg = Config.fromfile(str(tmp_path / 'deploy_config.py'))
    assert plain_cfg.model.type == 'EncoderDecoder' and plain_cfg.custom_hooks == []
    plain = MODELS.build(plain_cfg.model)
    plain.load_state_dict(ckpt['state_dict'], strict=True)
    assert ckpt['meta']['num_params'] == sum(p.numel() for p in plain.parameters())
    assert not any('g_prime' in k or 'film' in k for k in ckpt['state_dict'])


def _bn_model(**dida):
    seg = copy.deepcopy(SEG)
    seg['decode_head']['norm_cfg'] = dict(type='BN', requires_grad=True)
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(dict(
        type='DACS', segmentor=seg, imnet_feature_dist_lambda=0.0,
        plugins=[dict(type='DiDA', recon_channels=8, **dida)])))
    model.init_weights()
    model.train()
    return model


def test_degraded_path_stats_measure_without_changing_the_run():
    model = _bn_model()
    plugin, student = model.plugins[0], model.student
    x0 = torch.randn(4, 3, 32, 64)
    buffers = {k: v.clone() for k, v in norm_buffers(student).items()}
    rng = torch.get_rng_state()
    stats = degraded_path_stats(plugin, student, x0, 50,
                                torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in norm_buffers(student).items():
        assert torch.equal(v, buffers[k]), k
    assert all(p.grad is None for p in student.parameters())
    # g' = g at the start: z_hat ~ g'(x_t), so the fused features are ~2 g(x_t)
    assert 1.7 < stats['fused_ratio'] < 2.3
    assert stats['h_norm_var_ratio'] > 1.5
    # running statistics still at their init (var 1) vs a clean batch's variance
    assert np.isfinite(stats['h_running_var_ratio'])
    zero = _bn_model(compensation_init='zero')
    stats = degraded_path_stats(zero.plugins[0], zero.student, x0, 50,
                                torch.Generator().manual_seed(0))
    assert stats['fused_ratio'] == pytest.approx(1.0)
    # the same draws give the same numbers
    again = degraded_path_stats(zero.plugins[0], zero.student, x0, 50,
                                torch.Generator().manual_seed(0))
    assert again == stats


def test_hook_logs_diagnostics_at_its_interval(tmp_path):
    hook = HOOKS.build(dict(type='DiDAHook', vis_interval=0, diag_interval=2,
                            diag_timesteps=(0, 90)))
    runner = make_runner(tmp_path, it=1)
    runner.model.init_weights()
    runner.model.train()
    half = dict(inputs=[torch.randint(0, 255, (3, 32, 64), dtype=torch.uint8)
                        for _ in range(2)])
    hook.after_train_iter(runner, 0, data_batch=dict(source=half, target=half))
    scalars = runner.visualizer.scalars[2]
    assert set(scalars) == {f'diag/{k}_t{t}' for t in (0, 90) for k in (
        'fused_ratio', 'h_in_std_ratio', 'h_norm_var_ratio', 'h_running_var_ratio')}
    runner.iter = 2
    hook.after_train_iter(runner, 0, data_batch=dict(source=half, target=half))
    assert 3 not in runner.visualizer.scalars
    with pytest.raises(ValueError, match='diag_interval must be an int >= 0'):
        HOOKS.build(dict(type='DiDAHook', diag_interval=-1))

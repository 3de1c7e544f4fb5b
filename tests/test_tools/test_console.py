"""The terminal of a training shows the run: a short header, then progress. The dumps
(config, environment, hook order, paramwise options) go to the log file only, and no
warning of this project's own doing is printed."""
import glob
import os.path as osp

import torch
from mmengine.optim import DefaultOptimWrapperConstructor

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SMALL = ['model.data_preprocessor.size=(64,128)', 'train_cfg.max_iters=2',
         'train_cfg.val_interval=2', 'default_hooks.logger.interval=1',
         'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
         'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False']


def test_first_screen_shows_the_run_and_the_log_keeps_the_dumps(tiny_benchmark,
                                                               tmp_path, run_tool):
    work = tmp_path / 'work'
    config = osp.join(REPO, 'configs/dida/daformer_mit_tiny_procedural_dida.py')
    res = run_tool([osp.join(REPO, 'tools/train.py'), config, '--work-dir', str(work),
                    '--cfg-options'] + [o.replace('model.', 'model.segmentor.')
                                        for o in SMALL], cwd=tiny_benchmark)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    lines = res.stdout.splitlines()
    first = next(i for i, ln in enumerate(lines) if 'Iter(train)' in ln)
    assert first <= 40, '\n'.join(lines[:first])
    head = '\n'.join(lines[:first])
    for key in ('config: ', 'work dir: ', 'log file: ', 'device: ', 'seed 0', 'DiDA: ',
                'resume: no (a first start)'):
        assert key in head, head
    for noise in ('Config:', 'Hooks will be executed', 'paramwise_options',
                  'is skipped since', 'has been overridden', 'The draw is False',
                  'GPU number', 'build_loss', 'avg_non_ignore', 'FileClient',
                  'HardDiskBackend', 'The prefix is not set'):
        assert noise not in out, noise
    log = glob.glob(str(work / '*' / '*.log'))
    assert len(log) == 1
    text = open(log[0]).read()
    for dump in ('Config:', 'System environment', 'Hooks will be executed',
                 'paramwise_options'):
        assert dump in text, dump
    # tools/test.py: its metrics come after a few lines too, the dump in its log
    res = run_tool([osp.join(REPO, 'tools/test.py'), config, str(work / 'iter_2.pth'),
                    '--work-dir', str(tmp_path / 'test'), '--cfg-options'] + [
                        o.replace('model.', 'model.segmentor.') for o in SMALL
                        if not o.startswith(('train_', 'default_hooks'))],
                   cwd=tiny_benchmark)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    lines = res.stdout.splitlines()
    first = next(i for i, ln in enumerate(lines)
                 if 'Iter(test)' in ln or 'per class results' in ln)
    assert first <= 10, '\n'.join(lines[:first])
    for noise in ('Config:', 'System environment', 'build_loss', 'FileClient'):
        assert noise not in res.stdout + res.stderr, noise
    test_log = glob.glob(str(tmp_path / 'test' / '*' / '*.log'))
    assert test_log and 'Config:' in open(test_log[0]).read()


def test_frozen_modules_enter_the_optimiser_as_mmengines_constructor_puts_them():
    """The constructor that stays quiet about the teacher's frozen tensors builds the
    same param groups, in the same order, as mmengine's (which leaves them out)."""
    from mmseg_dida.engine.speed_options import SpeedOptimWrapperConstructor
    from tests.helpers.uda import build_dacs
    model = build_dacs(imnet_feature_dist_lambda=0.005, imnet_feature_dist_classes=[1])
    cfg = dict(type='OptimWrapper',
               optimizer=dict(type='AdamW', lr=6e-5, weight_decay=0.01))
    paramwise = dict(custom_keys=dict(head=dict(lr_mult=10.0)))
    ours = SpeedOptimWrapperConstructor(cfg, paramwise)(model).optimizer
    ref = DefaultOptimWrapperConstructor(cfg, paramwise)(model).optimizer
    assert len(ours.param_groups) == len(ref.param_groups) > 0
    for a, b in zip(ours.param_groups, ref.param_groups):
        assert [id(p) for p in a['params']] == [id(p) for p in b['params']]
        assert {k: v for k, v in a.items() if k != 'params'} == \
            {k: v for k, v in b.items() if k != 'params'}
    trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert sum(len(g['params']) for g in ours.param_groups) == trainable
    assert any(not p.requires_grad for p in model.parameters())
    assert isinstance(ours, torch.optim.AdamW)

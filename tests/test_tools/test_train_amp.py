"""tools/train.py --amp: fp16 (a bare --amp; CUDA only) or bf16 (CPU or CUDA)."""
import importlib.util
import os.path as osp

import pytest
from mmengine.config import Config

from mmseg_dida.engine.mixed_precision import (
    precision_of,
    precision_problem,
    set_mixed_precision,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN = osp.join(REPO, 'tools/train.py')
CONFIG = osp.join(REPO, 'configs/dida/daformer_mit_tiny_procedural_dida.py')
FAST = [
    'model.segmentor.data_preprocessor.size=(64,128)', 'train_dataloader.batch_size=1',
    'default_hooks.logger.interval=1', 'default_hooks.visualization.draw=False',
    'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
    'default_hooks.checkpoint.interval=2',
] + [f'{dl}.{k}' for dl in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                            'val_cfg.extra.source.dataloader',
                            'test_cfg.extra.source.dataloader')
     for k in ('num_workers=0', 'persistent_workers=False')]

spec = importlib.util.spec_from_file_location('train_tool', TRAIN)
train_tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_tool)


@pytest.mark.parametrize('argv,amp', [
    (['c.py'], None),
    (['c.py', '--amp'], 'fp16'),
    (['c.py', '--amp', '--work-dir', 'w'], 'fp16'),
    (['--amp', 'c.py'], 'fp16'),  # the bare flag before the config, as it used to be
    (['c.py', '--amp', 'bf16'], 'bf16'),
    (['--amp', 'bf16', 'c.py'], 'bf16'),
])
def test_amp_flag(argv, amp):
    args = train_tool.parse_args(argv)
    assert (args.config, args.amp) == ('c.py', amp)


def test_amp_flag_refuses_other_precisions(capsys):
    with pytest.raises(SystemExit):
        train_tool.parse_args(['c.py', '--amp', 'fp32'])
    assert "invalid choice: 'fp32'" in capsys.readouterr().err


def _cfg(optim_type=None):
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3))))
    if optim_type is not None:
        cfg.optim_wrapper.type = optim_type
    return cfg


def test_conversion_of_the_optim_wrapper(cpu_only):
    cfg = _cfg('OptimWrapper')
    set_mixed_precision(cfg, 'bf16')
    assert cfg.optim_wrapper.type == 'BF16OptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    cfg = _cfg()  # mmengine's default type
    set_mixed_precision(cfg, 'bf16')
    assert cfg.optim_wrapper.type == 'BF16OptimWrapper'
    assert 'already trains in bf16' in set_mixed_precision(cfg, 'bf16')  # unchanged
    assert cfg.optim_wrapper.type == 'BF16OptimWrapper'
    # the type with its scope, and AmpOptimWrapper in bfloat16, count as bf16 too
    for given in (dict(type='mmseg.BF16OptimWrapper'),
                  dict(type='AmpOptimWrapper', dtype='bfloat16')):
        cfg = _cfg(given['type'])
        cfg.optim_wrapper.update(given)
        assert 'already trains in bf16' in set_mixed_precision(cfg, 'bf16')
        assert precision_of(cfg.optim_wrapper) == 'bf16'
    assert precision_of(dict(type='AmpOptimWrapper')) == 'fp16'
    assert precision_of(dict(type='mmengine.OptimWrapper')) == 'fp32'
    with pytest.raises(ValueError, match='cannot convert AmpOptimWrapper'):
        set_mixed_precision(_cfg('AmpOptimWrapper'), 'bf16')
    cfg = _cfg('OptimWrapper')
    set_mixed_precision(cfg, 'fp16')
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.loss_scale) == (
        'AmpOptimWrapper', 'dynamic')
    with pytest.raises(ValueError, match='cannot convert BF16OptimWrapper'):
        set_mixed_precision(_cfg('BF16OptimWrapper'), 'fp16')


def test_one_rule_for_what_each_device_can_train_in():
    """mmseg_dida.engine.mixed_precision: fp16 needs CUDA, bf16 runs anywhere (where
    a CUDA device supports it); what cannot be had is a sentence, never a silent
    change of precision."""
    amp, bf16 = _cfg('AmpOptimWrapper').optim_wrapper, _cfg('BF16OptimWrapper').optim_wrapper
    assert precision_problem(amp, cuda=True) is None
    assert '--amp bf16' in precision_problem(amp, cuda=False)
    amp_bf16 = dict(amp, dtype='bfloat16')
    assert precision_problem(amp_bf16, cuda=True) is None
    assert 'use BF16OptimWrapper' in precision_problem(amp_bf16, cuda=False)
    assert precision_problem(bf16, cuda=False) is None
    assert precision_problem(bf16, cuda=True) is None
    assert 'does not support bfloat16' in precision_problem(bf16, cuda=True,
                                                            cuda_bf16=False)
    assert precision_problem(_cfg('OptimWrapper').optim_wrapper, cuda=False) is None


def test_bare_amp_without_cuda_is_one_error_line(cpu_only, capsys, tmp_path):
    status = train_tool.main(['--amp', CONFIG, '--work-dir', str(tmp_path / 'w')])
    assert status == 2
    assert capsys.readouterr().err.splitlines() == [
        f'error: {CONFIG}: AmpOptimWrapper (float16 autocast with loss scaling) needs '
        'CUDA and none is available here; use tools/train.py --amp bf16 '
        '(BF16OptimWrapper) or drop --amp']
    assert not (tmp_path / 'w').exists()


def test_amp_bf16_trains_dida_on_the_cpu(tiny_benchmark, run_tool, tmp_path):
    """Two iterations of DAFormer + DiDA with --amp bf16, then the validation; the
    run's config and log name the bf16 wrapper."""
    work = tmp_path / 'work'
    res = run_tool([TRAIN, CONFIG, '--amp', 'bf16', '--work-dir', str(work),
                    '--cfg-options'] + FAST, cwd=tiny_benchmark)
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert '--amp bf16: optim_wrapper.type = BF16OptimWrapper' in log
    dumped = Config.fromfile(str(work / osp.basename(CONFIG)))
    assert dumped.optim_wrapper.type == 'BF16OptimWrapper'
    assert 'Iter(train) [2/2]' in log and 'loss_recon' in log
    assert 'mIoU' in log  # the validation after training (fp32)
    assert osp.isfile(work / 'iter_2.pth')

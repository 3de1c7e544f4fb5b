"""End to end: tools/train.py -> checkpoint -> tools/test.py -> --resume."""
import json
import os
import os.path as osp
import re

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs/benchmark/source_only_mit_tiny_procedural.py')
TRAIN = osp.join(REPO, 'tools/train.py')
TEST = osp.join(REPO, 'tools/test.py')
# Small and single-process: the tiny benchmark is 128x64, 8 train / 4 val images.
FAST = [
    'model.data_preprocessor.size=(64,128)', 'train_dataloader.batch_size=2',
    'default_hooks.logger.interval=1', 'default_hooks.visualization.draw=False',
] + [f'{dl}.{k}' for dl in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                            'val_cfg.extra.source.dataloader',
                            'test_cfg.extra.source.dataloader')
     for k in ('num_workers=0', 'persistent_workers=False')]


def _iters(max_iters):
    return [f'train_cfg.max_iters={max_iters}', 'train_cfg.val_interval=4',
            'default_hooks.checkpoint.interval=2']


@pytest.fixture(scope='module')
def trained(tiny_benchmark, run_tool):
    work = tiny_benchmark / 'work'
    res = run_tool([TRAIN, CONFIG, '--work-dir', str(work), '--cfg-options']
                   + FAST + _iters(4), cwd=tiny_benchmark)
    assert res.returncode == 0, res.stderr[-3000:]
    return tiny_benchmark, work, res


def test_train_writes_checkpoint_and_validates_both_domains(trained):
    _, work, res = trained
    assert osp.isfile(work / 'iter_4.pth')
    log = res.stdout + res.stderr
    # validation ran on target val (primary) and source val (extra)
    m = re.search(r'Iter\(val\).*?mIoU: ([\d.]+).*?source/mIoU: ([\d.]+)', log)
    assert m, log[-2000:]
    assert 0 <= float(m.group(1)) <= 100 and 0 <= float(m.group(2)) <= 100


def test_test_tool_prints_miou_table(trained, run_tool):
    cwd, work, _ = trained
    res = run_tool([TEST, CONFIG, str(work / 'iter_4.pth'), '--work-dir',
                    str(work / 'test'), '--cfg-options'] + FAST, cwd=cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.load(open(work / 'test' / 'test_metrics.json'))
    assert {'mIoU', 'aAcc', 'source/mIoU'} <= set(metrics)
    table = re.search(r'\| target\s+\|.*\n\| source\s+\|.*', res.stdout)
    assert table, res.stdout[-2000:]
    assert f"{metrics['mIoU']:.2f}" in table.group(0)


def test_resume_continues_from_saved_iteration(trained, run_tool):
    cwd, work, _ = trained
    res = run_tool([TRAIN, CONFIG, '--work-dir', str(work), '--resume',
                    '--cfg-options'] + FAST + _iters(6), cwd=cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert 'resumed epoch: 0, iter: 4' in log
    trained_iters = [int(i) for i in re.findall(r'Iter\(train\) \[\s*(\d+)/6\]', log)]
    assert trained_iters == [5, 6]
    assert osp.isfile(work / 'iter_6.pth')


def test_missing_data_root_is_one_clear_error(tmp_path, run_tool):
    res = run_tool([TRAIN, CONFIG, '--work-dir', str(tmp_path / 'w')], cwd=tmp_path)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith('error:')]
    assert len(lines) == 1
    assert "'data/procedural/source'" in lines[0]
    assert 'train_dataloader.dataset.data_root' in lines[0]
    assert not os.path.exists(tmp_path / 'w')  # nothing written


def test_unknown_config_key_is_reported(tmp_path, tiny_benchmark, run_tool):
    res = run_tool([TRAIN, CONFIG, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                    'model.backbone.not_an_arg=1'] + FAST + _iters(1), cwd=tiny_benchmark)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith('error:')]
    assert len(lines) == 1 and 'not_an_arg' in lines[0]
    assert 'MixVisionTransformer' in lines[0]

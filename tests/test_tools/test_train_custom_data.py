"""README "Train on your own data", end to end on a tiny 5-class pair: the procedural
images with Cityscapes train ids as raw label ids, read through the template's class
table (configs/_base_/datasets/uda_custom_template.py) by the method config users copy;
RCS statistics from rcs_stats.py --config, --check-data, 2 DAFormer iterations and a
validation; an id outside the table is one error line."""
import importlib.util
import json
import os.path as osp
import re
import shutil

import cv2
import numpy as np
import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = 'configs/custom/daformer_mit_tiny_custom.py'
RAW_TO_TRAIN = {0: 0, 1: 0, 2: 1, 5: 1, 7: 1, 8: 2, 9: 2, 10: 3, 11: 4, 13: 4, 255: 255}
QUIET = ['default_hooks.logger.interval=1', 'default_hooks.visualization.draw=False',
         'custom_hooks=[]'] + [
    f'{loader}.{key}' for loader in ('train_dataloader', 'val_dataloader',
                                     'test_dataloader')
    for key in ('num_workers=0', 'persistent_workers=False')]


def load_tool(path):
    spec = importlib.util.spec_from_file_location(
        'tool_' + osp.basename(path)[:-3], osp.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example(tmp_path, tiny_benchmark, monkeypatch):
    """The worked example at the configs' relative data root: 8 source and 8 target
    training images, 4 target validation images, 128x64."""
    shutil.copytree(tiny_benchmark / 'data', tmp_path / 'data')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _labels(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob('*_labelTrainIds.png'))


def test_train_on_a_custom_pair(example, run_tool, capsys):
    # RCS statistics in train ids of the 5-class table, from the config alone
    assert load_tool('tools/convert_datasets/rcs_stats.py').main(
        ['--config', osp.join(REPO, CONFIG)]) == 0
    source = example / 'data/procedural/source'
    with open(source / 'sample_class_stats.json') as f:
        stats = {osp.basename(s.pop('file')): s for s in json.load(f)}
    labels = _labels(source / 'gtFine/train')
    assert sorted(stats) == sorted(osp.basename(p) for p in labels)
    for path in labels:
        raw = cv2.imread(str(source / 'gtFine/train' / path), cv2.IMREAD_UNCHANGED)
        train = np.vectorize(RAW_TO_TRAIN.get)(raw)
        expected = {str(c): int((train == c).sum()) for c in range(5)
                    if (train == c).any()}
        assert stats[osp.basename(path)] == expected

    res = run_tool([osp.join(REPO, 'tools/train.py'), osp.join(REPO, CONFIG),
                    '--check-data', '--work-dir', 'w', '--cfg-options'] + QUIET + [
                        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                        'default_hooks.checkpoint.interval=2',
                        'train_dataloader.dataset.rare_class_sampling.min_pixels=0'],
                   cwd=example)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert 'checking 8 samples of train_dataloader.dataset.source' in res.stdout
    assert 'checking 4 samples of val_dataloader.dataset' in res.stdout
    assert 'RCS classes and probabilities' in out
    assert osp.isfile(example / 'w' / 'iter_2.pth')
    for name in ('flat', 'construction', 'nature', 'sky', 'movable'):
        assert re.search(rf'\|\s+{name}\s+\|', out)  # the validation's per-class IoU
    assert 'mIoU' in out and 'Traceback' not in out

    # a raw id the class table does not list, also one below 5 (a valid train id)
    bad = str(example / 'data/procedural/target/gtFine/val' / _labels(
        example / 'data/procedural/target/gtFine/val')[2])
    raw = cv2.imread(bad, cv2.IMREAD_UNCHANGED)
    raw[5, 5:9] = 3
    cv2.imwrite(bad, raw)
    train = load_tool('tools/train.py')
    capsys.readouterr()
    assert train.main([osp.join(REPO, CONFIG), '--check-data', '--work-dir', 'w2',
                       '--cfg-options'] + QUIET) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f'error: {osp.join(REPO, CONFIG)}: label ')
    assert osp.relpath(bad, example) in err[0]
    assert 'label id(s) [3] are not in the label table' in err[0]
    assert not osp.exists(example / 'w2')

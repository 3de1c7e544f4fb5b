"""tools/analysis/bridge_curve.py: the domain-gap measures on constructed features, and
the tool on a DiDA model trained for a few iterations on the tiny benchmark."""
import csv
import importlib.util
import os.path as osp

import numpy as np
import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools/analysis/bridge_curve.py')
spec = importlib.util.spec_from_file_location('bridge_curve', TOOL)
bridge_curve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bridge_curve)


def test_probe_and_mmd_on_constructed_features():
    rng = np.random.default_rng(0)
    same_a, same_b = rng.normal(size=(60, 5)), rng.normal(size=(60, 5))
    far = rng.normal(size=(60, 5)) + np.array([4.0, 0, 0, 0, 0])
    # the same distribution: chance accuracy, MMD^2 ~ 0 (unbiased: can be < 0)
    assert 0.3 < bridge_curve.linear_probe_accuracy(same_a, same_b) < 0.7
    assert abs(bridge_curve.mmd2_rbf(same_a, same_b)) < 0.05
    # separated along one axis: the probe finds it, MMD^2 is large
    assert bridge_curve.linear_probe_accuracy(same_a, far) > 0.95
    assert bridge_curve.mmd2_rbf(same_a, far) > 0.3
    # MMD^2 of a sample with itself shifted grows with the shift
    shifts = [bridge_curve.mmd2_rbf(same_a, same_a[::-1] + d) for d in (0.5, 1, 2)]
    assert shifts[0] < shifts[1] < shifts[2]
    with pytest.raises(ValueError, match='need >= 2 samples'):
        bridge_curve.linear_probe_accuracy(same_a[:1], same_b)
    # grouped folds: rows of one group (pixels of one image) are never split between
    # train and test. Both domains draw images from the same distribution (no domain
    # signal), but each image has a strong offset of its own: split by row, the
    # probe recognises the test rows' images from their train rows; split by image,
    # it is at chance.
    groups = np.repeat(np.arange(12), 5)
    a = rng.normal(scale=5.0, size=(12, 30))[groups] + rng.normal(size=(60, 30))
    b = rng.normal(scale=5.0, size=(12, 30))[groups] + rng.normal(size=(60, 30))
    assert bridge_curve.linear_probe_accuracy(a, b) > 0.8
    grouped = bridge_curve.linear_probe_accuracy(a, b, groups_a=groups,
                                                 groups_b=groups)
    assert 0.25 < grouped < 0.75
    with pytest.raises(ValueError, match='need >= 2 groups'):
        bridge_curve.linear_probe_accuracy(a, b, groups_a=np.zeros(60),
                                           groups_b=np.zeros(60))


SMOKE = ['model.data_preprocessor.size=(64,128)', 'default_hooks.logger.interval=1',
         'default_hooks.visualization.draw=False', 'train_cfg.max_iters=30',
         'param_scheduler.0.end=2',
         'train_cfg.val_interval=30', 'param_scheduler.1.end=30',
         'default_hooks.checkpoint.interval=30'] + [
    f'{dl}.{k}' for dl in ('train_dataloader', 'test_dataloader',
                           'val_dataloader', 'test_cfg.extra.source.dataloader',
                           'val_cfg.extra.source.dataloader')
    for k in ('num_workers=0', 'persistent_workers=False')]


def test_bridge_curve_of_a_dida_model(tiny_benchmark, tmp_path, run_tool):
    config = osp.join(REPO, 'configs/dida/daformer_mit_tiny_procedural_dida.py')
    work = tmp_path / 'work'
    res = run_tool([osp.join(REPO, 'tools/train.py'), config, '--work-dir', str(work),
                    '--cfg-options'] + SMOKE, cwd=tiny_benchmark)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / 'curve'
    res = run_tool([TOOL, config, str(work / 'iter_30.pth'), '--out', str(out),
                    '--timesteps', '0', '50', '90', '--cfg-options'] + SMOKE,
                   cwd=tiny_benchmark)
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'bridge curve: source' in res.stdout  # progress
    rows = list(csv.DictReader(open(out / 'bridge_curve.csv')))
    assert [int(r['t']) for r in rows] == [0, 50, 90]
    assert set(rows[0]) == {'t', 'abar', 'target_mIoU', 'source_mIoU',
                            'probe_acc_pixel', 'probe_acc_image', 'mmd2_pixel'}
    abar = [float(r['abar']) for r in rows]
    assert abar[0] > 0.99 and abar[0] > abar[1] > abar[2]
    for r in rows:
        assert 0 <= float(r['probe_acc_pixel']) <= 1
        assert 0 <= float(r['probe_acc_image']) <= 1
        assert 0 <= float(r['source_mIoU']) <= 100
    # the model learnt the source a little: noise at t = 90 erases it
    assert float(rows[2]['source_mIoU']) < float(rows[0]['source_mIoU'])
    png = (out / 'bridge_curve.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10_000
    # the CSV reads back as written; a reference curve is drawn beside
    assert bridge_curve.read_csv(str(out / 'bridge_curve.csv'))[1]['t'] == 50
    both = tmp_path / 'both.png'
    rows = bridge_curve.read_csv(str(out / 'bridge_curve.csv'))
    bridge_curve.plot(rows, str(both), 'x', reference=rows, labels=('a', 'b'))
    assert both.read_bytes()[:4] == b'\x89PNG'
    res = run_tool([TOOL, config, str(tmp_path / 'missing.pth')], cwd=tiny_benchmark)
    assert res.returncode == 2 and "missing.pth' does not exist" in res.stderr

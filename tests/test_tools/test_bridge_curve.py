"""tools/analysis/bridge_curve.py: the domain-gap measures on constructed features with
known answers (probe, MMD^2; few-image probe, class-conditional MMD^2, source-trained
readout), the gt label at a feature position, and the tool on a DiDA model trained for
a few iterations on the tiny benchmark."""
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


# Constructed pixel features for the label-aware measures: K classes whose means differ
# in the first CLASS_DIMS dimensions only, unit noise per pixel and an offset per image
# (images differ from each other, as real ones do); a domain may draw the classes with
# other frequencies (label shift), move each class's mean (class shift) or add one
# offset to every pixel along the dimensions no class uses (a domain signature).
K, DIMS, CLASS_DIMS, IMAGES, PIXELS = 5, 24, 12, 40, 16
CLASS_MEANS = np.random.default_rng(0).normal(scale=2.0, size=(K, DIMS))
CLASS_MEANS[:, CLASS_DIMS:] = 0
UNIFORM = np.full(K, 1 / K)


def _domain(rng, freqs=UNIFORM, class_shift=0.0, signature=0.0):
    """(features, labels, image ids) of IMAGES x PIXELS pixels."""
    labels = rng.choice(K, size=IMAGES * PIXELS, p=freqs)
    groups = np.repeat(np.arange(IMAGES), PIXELS)
    x = (CLASS_MEANS[labels] + rng.normal(size=(len(labels), DIMS))
         + rng.normal(scale=0.5, size=(IMAGES, DIMS))[groups])
    # each class moved by |class_shift| along its own direction within the class dims
    moves = np.random.default_rng(1).normal(size=(K, DIMS))
    moves[:, CLASS_DIMS:] = 0
    x += class_shift * (moves / np.linalg.norm(moves, axis=1, keepdims=True))[labels]
    x[:, CLASS_DIMS:] += signature / np.sqrt(DIMS - CLASS_DIMS)
    return x, labels, groups


def _mmd(source, target):
    """(MMD^2, class-conditional MMD^2) with one kernel."""
    bandwidth = bridge_curve.median_sq_distance(np.concatenate([source[0], target[0]]))
    return (bridge_curve.mmd2_rbf(source[0], target[0]),
            bridge_curve.class_mmd2_rbf(source[0], target[0], source[1], target[1],
                                        bandwidth))


def _readout(source, target):
    """(held-out source, target) balanced accuracy of the source-trained readout."""
    return bridge_curve.source_readout_accuracy(source[0], target[0], source[1],
                                                target[1], source[2])


def test_class_mmd_sees_class_shifts_not_label_shifts():
    rng = np.random.default_rng(2)
    source = _domain(rng)
    mmd, cmmd = _mmd(source, _domain(rng))
    # the same distribution: both ~0 (0.002 here: pixels of one image are alike, so
    # the within-domain kernel means are a little larger than between domains)
    assert abs(mmd) < 0.005 and abs(cmmd) < 0.005
    # a pure label shift (class frequencies 50/30/10/5/5 %, every class's pixels as in
    # the source): the unconditional MMD^2 counts it as a gap (0.030), the
    # class-conditional one stays at the level of identical distributions (0.003)
    shift_mmd, shift_cmmd = _mmd(source, _domain(rng, freqs=np.array(
        [.5, .3, .1, .05, .05])))
    assert shift_mmd > 0.02 and abs(shift_cmmd) < 0.005
    assert shift_mmd > 5 * abs(shift_cmmd)
    # each class moved: it grows with the move (0.014, 0.039, 0.148)
    moved = [_mmd(source, _domain(rng, class_shift=d))[1] for d in (1, 2, 4)]
    assert 2 * cmmd < moved[0] < moved[1] < moved[2]
    # the kernel defaults to the median bandwidth of the stacked domains (at most 1000
    # rows of each); a class needs min_count rows in both domains, else NaN
    target = _domain(rng, class_shift=2)
    assert bridge_curve.class_mmd2_rbf(source[0], target[0], source[1], target[1]) > 0
    assert np.isnan(bridge_curve.class_mmd2_rbf(source[0][:20], target[0][:20],
                                                source[1][:20], target[1][:20],
                                                min_count=10))


def test_source_readout_measures_the_gap_that_matters_to_a_source_head():
    rng = np.random.default_rng(3)
    source = _domain(rng)
    src, tgt = _readout(source, _domain(rng))
    # the same distribution: the source-trained readout is as good on the target as on
    # held-out source images
    assert src > 0.95 and abs(src - tgt) < 0.02
    # a domain signature along dimensions that no class uses: the domains are linearly
    # separable (the probe reads ~1), yet the readout transfers: the probe's verdict
    # says nothing about what a source-trained head loses
    signed = _domain(rng, signature=6.0)
    assert bridge_curve.linear_probe_accuracy(
        source[0], signed[0], groups_a=source[2], groups_b=signed[2]) > 0.95
    src_s, tgt_s = _readout(source, signed)
    assert src_s == src and abs(src_s - tgt_s) < 0.02
    # classes moved in the dimensions the readout uses: target accuracy falls with the
    # move; the held-out source accuracy (same source, same folds) does not change
    moved = [_readout(source, _domain(rng, class_shift=d)) for d in (2, 4, 6)]
    assert [m[0] for m in moved] == [src] * 3
    assert moved[0][1] > moved[1][1] > moved[2][1] and moved[2][1] < src - 0.1
    # features without class information: chance, 1 / K
    noise = [rng.normal(size=(len(source[0]), DIMS)) for _ in range(2)]
    src_n, tgt_n = bridge_curve.source_readout_accuracy(
        noise[0], noise[1], source[1], source[1], source[2])
    assert abs(src_n - 1 / K) < 0.06 and abs(tgt_n - 1 / K) < 0.06
    # fewer than two classes with min_count rows in both domains
    assert np.isnan(bridge_curve.source_readout_accuracy(
        source[0], source[0], np.zeros(len(source[1])), source[1], source[2])[0])


def test_few_image_probe_grows_with_the_gap_and_stays_below_the_full_probe():
    # a shift of every dimension, against images that differ from each other by more:
    # trained on all images the probe separates the domains; trained on 4 per domain
    # it cannot tell the shift from the images' own variation as well
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(30), 16)

    def domain(shift, dims=64):
        return (rng.normal(size=(30, dims))[groups] + rng.normal(size=(480, dims))
                + shift / np.sqrt(dims))
    source = domain(0.0)
    few, full = [], []
    for shift in (0.0, 3.0, 5.0, 10.0):
        target = domain(shift)
        few.append(bridge_curve.few_image_probe_accuracy(source, target, groups,
                                                         groups, images=4))
        full.append(bridge_curve.linear_probe_accuracy(
            source, target, groups_a=groups, groups_b=groups))
    # 0.54, 0.63, 0.86, 1.00 against the full probe's 0.60, 0.78, 0.94, 1.00 (30
    # images per domain differ by chance too: their mean offsets are ~2 apart)
    assert abs(few[0] - 0.5) < 0.06
    assert few[0] < few[1] < few[2] < few[3] and few[3] > 0.95
    assert full[1] > few[1] + 0.1 and full[2] > few[2] + 0.05
    with pytest.raises(ValueError, match='need > 4 images per domain, got 4 and 30'):
        bridge_curve.few_image_probe_accuracy(source[:64], source, groups[:64], groups)


def test_position_labels_read_the_gt_at_the_feature_cell():
    """The label at a feature cell is that of the gt pixel nearest to the cell's centre,
    through the preprocessor's padding and a resize between the input and the gt."""
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gt = torch.arange(8 * 16).view(1, 8, 16) % 200  # label = flat gt index
    sample = SegDataSample(gt_sem_seg=PixelData(data=gt))
    # input 16 x 32 (the gt upsampled 2x), features 4 x 8 (stride 4): the centre of
    # cell (r, c) is input pixel (4r + 2, 4c + 2) = gt pixel (2r + 1, 2c + 1)
    positions = torch.tensor([[0, 9, 31]])
    labels = bridge_curve.position_labels([sample], positions, (4, 8), (16, 32))
    expected = [(2 * (p // 8) + 1) * 16 + 2 * (p % 8) + 1 for p in (0, 9, 31)]
    assert labels.tolist() == [e % 200 for e in expected]
    # the same image padded on the right and bottom by 8 (input 24 x 40, features
    # 6 x 10): cells in the padding are ignored
    sample.set_metainfo(dict(padding_size=[0, 8, 0, 8]))
    positions = torch.tensor([[0, 11, 9, 50]])  # (0,0), (1,1), (0,9): pad, (5,0): pad
    labels = bridge_curve.position_labels([sample], positions, (6, 10), (24, 40))
    assert labels.tolist() == [(1 * 16 + 1), (3 * 16 + 3), 255, 255]


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
                    '--timesteps', '0', '50', '90', '--probe-images', '2',
                    # 4 images per domain: enough pixels for classes of >= 10 in both
                    '--pixels', '64', '--cfg-options'] + SMOKE, cwd=tiny_benchmark)
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'bridge curve: source' in res.stdout  # progress
    rows = list(csv.DictReader(open(out / 'bridge_curve.csv')))
    assert [int(r['t']) for r in rows] == [0, 50, 90]
    # the columns of earlier versions first, in their order; the later measures after
    assert list(rows[0]) == ['t', 'abar', 'target_mIoU', 'source_mIoU',
                             'probe_acc_pixel', 'probe_acc_image', 'mmd2_pixel',
                             'probe_acc_pixel_few', 'cmmd2_pixel',
                             'readout_acc_source', 'readout_acc_target']
    abar = [float(r['abar']) for r in rows]
    assert abar[0] > 0.99 and abar[0] > abar[1] > abar[2]
    for r in rows:
        for key in ('probe_acc_pixel', 'probe_acc_image', 'probe_acc_pixel_few',
                    'readout_acc_source', 'readout_acc_target'):
            assert 0 <= float(r[key]) <= 1, (key, r)
        assert 0 <= float(r['source_mIoU']) <= 100
        assert np.isfinite(float(r['cmmd2_pixel']))
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

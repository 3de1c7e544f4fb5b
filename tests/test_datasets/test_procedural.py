import hashlib
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from mmseg_dida.datasets import procedural as P


def _stats(domain, n=40, size=(128, 64)):
    """Class pixel frequencies and per-class mean colours over n train samples."""
    freq = np.zeros(19)
    colour_sum, colour_cnt = np.zeros((19, 3)), np.zeros(19)
    for i in range(n):
        img, lab = P.make_sample(7, domain, 'train', i, size)
        freq += np.bincount(lab.ravel(), minlength=256)[:19]
        for c in np.unique(lab):
            m = lab == c
            colour_sum[c] += img[m].astype(np.float64).sum(0)
            colour_cnt[c] += m.sum()
    return freq / freq.sum(), colour_sum / np.maximum(colour_cnt, 1)[:, None]


@pytest.mark.parametrize('gap', list(P.GAPS))
def test_samples_are_seed_deterministic(gap):
    a_img, a_lab = P.make_sample(3, 'target', 'val', 5, (96, 48), gap)
    b_img, b_lab = P.make_sample(3, 'target', 'val', 5, (96, 48), gap)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    c_img, c_lab = P.make_sample(4, 'target', 'val', 5, (96, 48), gap)
    assert not np.array_equal(a_lab, c_lab)
    assert a_img.shape == (48, 96, 3) and a_img.dtype == np.uint8
    assert a_lab.shape == (48, 96) and a_lab.dtype == np.uint8


def test_labels_are_cityscapes_train_ids_of_the_used_classes():
    seen = set()
    for domain in P.DOMAINS:
        for i in range(20):
            seen |= set(np.unique(P.make_sample(0, domain, 'train', i, (128, 64))[1]))
    assert seen <= set(P.USED_TRAIN_IDS)
    assert len(seen) >= 9  # at least 9 Cityscapes classes actually occur
    assert {P.ROAD, P.SIDEWALK, P.BUILDING, P.SKY, P.CAR, P.PERSON, P.POLE} <= seen


def test_domains_share_geometry_but_not_appearance():
    f_src, c_src = _stats('source')
    f_tgt, c_tgt = _stats('target')
    # Same layout distribution: class frequencies close (total variation distance).
    tv = 0.5 * np.abs(f_src - f_tgt).sum()
    assert tv < 0.04, tv
    # Different appearance: the mean colour of frequent classes differs strongly.
    frequent = [c for c in P.USED_TRAIN_IDS if min(f_src[c], f_tgt[c]) > 0.01]
    dist = np.linalg.norm(c_src[frequent] - c_tgt[frequent], axis=1)
    assert len(frequent) >= 6 and np.median(dist) > 60, dist
    # ... and the geometry is not copied: same index, different layout per domain.
    assert not np.array_equal(P.make_sample(7, 'source', 'train', 0, (128, 64))[1],
                              P.make_sample(7, 'target', 'train', 0, (128, 64))[1])


@pytest.mark.parametrize('gap', list(P.GAPS))
def test_only_the_camera_presets_add_sensor_noise(gap):
    # Sensor noise + blur: target pixel values inside one flat-labelled region vary more
    # at fine scale than the clean source's flat classes (sky has a smooth gradient in
    # the source, so its horizontal neighbour differences are ~0 there). The presets
    # without the target camera's optics keep that sky smooth.
    def hdiff(domain):
        d = []
        for i in range(10):
            img, lab = P.make_sample(1, domain, 'val', i, (128, 64), gap)
            m = (lab[:, 1:] == P.SKY) & (lab[:, :-1] == P.SKY)
            d.append(np.abs(np.diff(img.astype(float), axis=1))[m].mean())
        return np.mean(d)
    noisy = hdiff('target') > 3 * hdiff('source') + 1
    assert noisy == (gap in ('full', 'camera')), (hdiff('target'), hdiff('source'))


def test_labels_and_source_images_are_the_same_for_every_gap():
    size = (128, 64)
    for split, i in (('train', 0), ('train', 3), ('val', 1)):
        src_img, src_lab = P.make_sample(2, 'source', split, i, size)
        tgt_img, tgt_lab = P.make_sample(2, 'target', split, i, size)
        for gap in P.GAPS:
            img, lab = P.make_sample(2, 'source', split, i, size, gap)
            np.testing.assert_array_equal(img, src_img)
            np.testing.assert_array_equal(lab, src_lab)
            img, lab = P.make_sample(2, 'target', split, i, size, gap)
            np.testing.assert_array_equal(lab, tgt_lab)
            # only the appearance of the target changes, and every preset changes it
            assert (gap == 'full') == np.array_equal(img, tgt_img), gap


def _clean_target(seed, split, index, size):
    """The target layout and the same appearance stream, rendered like the source."""
    geom, app = P._sample_seed(seed, 'target', split, index).spawn(2)
    label, inst = P.sample_layout(np.random.default_rng(geom), size[1], size[0])
    return P.render(label, inst, np.random.default_rng(app), P.SOURCE_LOOK), label, inst


def test_fog_thickens_with_depth():
    # fog draws its random numbers after the clean render's, so the clean render of the
    # same stream is the scene behind the fog: near rows barely change, the sky turns
    # into a light grey airlight, and the loss of contrast grows towards the horizon.
    near, far, sky_spread = [], [], []
    for i in range(6):
        fog, lab = P.make_sample(5, 'target', 'val', i, (128, 64), 'fog')
        clean, _, inst = _clean_target(5, 'val', i, (128, 64))
        diff = np.abs(fog.astype(float) - clean).mean(-1)
        depth = P.layout_depth(lab, inst)
        near.append(diff[depth < 1.5].mean())
        far.append(diff[(depth >= P.FOG_MAX_DEPTH) & (lab != P.SKY)].mean())
        sky = fog[lab == P.SKY].astype(float)
        sky_spread.append((sky.max(-1) - sky.min(-1)).mean())
        assert sky.mean() > 170
    assert np.mean(near) < 25 and np.mean(far) > 3 * np.mean(near), (near, far)
    assert np.mean(sky_spread) < 20, sky_spread


def test_layout_depth():
    H, W = 40, 8
    label = np.full((H, W), P.SKY, np.uint8)
    label[10:] = P.ROAD
    label[4:10, :4] = P.BUILDING  # stands on the horizon row 10
    label[20:30, 2:4] = P.CAR      # stands on the road at row 30
    label[22:25, 2:3] = P.POLE     # a pole in front of it is hidden below row 25
    inst = np.zeros((H, W), np.int32)
    inst[(label == P.CAR)] = 1
    d = P.layout_depth(label, inst, max_depth=10)
    assert np.isinf(d[:4]).all() and np.isinf(d[4:10, 4:]).all()
    assert d[-1, 0] == pytest.approx(30 / 29) and (np.diff(d[13:, 0]) < 0).all()
    assert (d[4:10, :4] == 10).all() and d[10, 0] == 10
    np.testing.assert_allclose(d[20:30, 3], 30 / 20)  # the car: its road contact row
    np.testing.assert_allclose(d[22:25, 2], 30 / 15)  # the pole: where it disappears


def test_unknown_gap_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown gap preset 'rain'; valid presets: "
                                         'full, texture, palette, camera, fog'):
        P.make_sample(0, 'target', 'val', 0, (64, 32), 'rain')
    with pytest.raises(ValueError, match='unknown gap preset'):
        P.generate_benchmark('/nonexistent/never-written', gap='rain')


def _pixels_digest(root):
    """sha256 over every PNG of a benchmark: relative path, dtype, shape and pixels
    (the decoded pixels, so a different zlib cannot change it)."""
    h = hashlib.sha256()
    files = sorted(osp.relpath(osp.join(d, f), root)
                   for d, _, fs in os.walk(root) for f in fs)
    for rel in files:
        if rel.endswith('.png'):
            a = cv2.imread(osp.join(root, rel), cv2.IMREAD_UNCHANGED)
            h.update(rel.encode())
            h.update(str((a.dtype, a.shape)).encode())
            h.update(a.tobytes())
    return h.hexdigest(), files


def test_full_gap_is_the_benchmark_from_before_presets(tmp_path):
    # Pinned with the generator before gap presets existed: the default (full) writes
    # the same files with the same pixels; benchmark.json only gains the gap keys.
    root = str(tmp_path / 'proc')
    meta = P.generate_benchmark(root, seed=1, size=(96, 48), counts=dict(train=4, val=2))
    digest, files = _pixels_digest(root)
    assert digest == '89fa4674ab07c65a2e725006ccf62731286203e07026f48163611f27a53a7057'
    assert len(files) == 26 and {'benchmark.json', 'README.md'} <= set(files)
    assert {k: meta[k] for k in ('format', 'seed', 'size', 'counts')} == dict(
        format=1, seed=1, size=[96, 48], counts=dict(train=4, val=2))
    assert meta['gap'] == 'full'


@pytest.mark.parametrize('gap', list(P.GAPS))
def test_generate_benchmark_layout_and_reader(tmp_path, gap):
    root = tmp_path / 'proc'
    meta = P.generate_benchmark(str(root), seed=1, size=(64, 32),
                                counts=dict(train=3, val=2), gap=gap)
    assert meta == P.read_meta(str(root))
    assert meta['gap'] == gap and meta['target'] == P.GAP_DESCRIPTIONS[gap]
    readme = (root / 'README.md').read_text()
    assert readme.startswith(f'# Procedural source->target benchmark: gap preset `{gap}`')
    assert f'--gap {gap} --seed 1' in readme and P.GAP_DESCRIPTIONS[gap] in readme
    for domain in P.DOMAINS:
        for split, n in (('train', 3), ('val', 2)):
            for i in range(n):
                img_path, seg_path = P.sample_paths(str(root), domain, split, i)
                img = cv2.imread(img_path)[..., ::-1]
                lab = cv2.imread(seg_path, cv2.IMREAD_UNCHANGED)
                ref_img, ref_lab = P.make_sample(1, domain, split, i, (64, 32), gap)
                np.testing.assert_array_equal(img, ref_img)
                np.testing.assert_array_equal(lab, ref_lab)
    from mmseg.datasets import CityscapesDataset
    ds = CityscapesDataset(data_root=str(root / 'target'),
                           data_prefix=dict(img_path='leftImg8bit/train',
                                            seg_map_path='gtFine/train'),
                           pipeline=[], serialize_data=False)
    assert len(ds) == 3
    info = ds.get_data_info(0)
    assert info['seg_map_path'].endswith('_gtFine_labelTrainIds.png')
    assert osp.isfile(info['seg_map_path'])


def test_refuses_non_empty_folder_unless_overwrite(tmp_path):
    root = tmp_path / 'proc'
    root.mkdir()
    (root / 'keep.txt').write_text('x')
    with pytest.raises(FileExistsError, match='not empty'):
        P.generate_benchmark(str(root), counts=dict(train=1, val=1), size=(32, 32))
    assert os.listdir(root) == ['keep.txt']
    P.generate_benchmark(str(root), counts=dict(train=1, val=1), size=(32, 32),
                         overwrite=True)
    assert sorted(os.listdir(root)) == ['README.md', 'benchmark.json', 'source', 'target']


def test_meta_of_a_benchmark_from_before_presets_reads_as_full(tmp_path):
    (tmp_path / 'benchmark.json').write_text(
        '{"format": 1, "seed": 0, "size": [256, 128], "counts": {"train": 1, "val": 1}}')
    assert P.read_meta(str(tmp_path))['gap'] == 'full'


def test_failure_leaves_nothing_half_written(tmp_path, monkeypatch):
    calls = {'n': 0}
    real = cv2.imwrite

    def flaky(path, img):
        calls['n'] += 1
        if calls['n'] > 5:
            raise OSError('disk full')
        return real(path, img)

    monkeypatch.setattr(P.cv2, 'imwrite', flaky)
    with pytest.raises(OSError, match='disk full'):
        P.generate_benchmark(str(tmp_path / 'proc'), counts=dict(train=4, val=1),
                             size=(32, 32))
    assert os.listdir(tmp_path) == []


def test_cli_refuses_and_reports(tmp_path, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'generate_benchmark',
        osp.join(osp.dirname(__file__), '..', '..', 'tools', 'generate_benchmark.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = tmp_path / 'b'
    assert cli.main([str(out), '--size', '32', '32', '--num-train', '1',
                     '--num-val', '1']) == 0
    assert cli.main([str(out), '--num-train', '1', '--num-val', '1']) == 2
    assert 'refusing' in capsys.readouterr().err
    assert cli.parse_args([]).out_dir == osp.join('data', 'procedural')
    assert cli.parse_args(['--gap', 'fog']).out_dir == osp.join('data', 'procedural_fog')
    assert cli.main([str(tmp_path / 'c'), '--gap', 'camera', '--size', '32', '32',
                     '--num-train', '1', '--num-val', '1']) == 0
    assert P.read_meta(str(tmp_path / 'c'))['gap'] == 'camera'
    with pytest.raises(SystemExit) as e:
        cli.parse_args(['--gap', 'rain'])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'rain'" in err and "'palette', 'camera', 'fog'" in err


def test_appearance_is_validated():
    with pytest.raises(ValueError, match="Appearance: texture must be one of"):
        P.Appearance(texture='game')

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


def test_samples_are_seed_deterministic():
    a_img, a_lab = P.make_sample(3, 'target', 'val', 5, (96, 48))
    b_img, b_lab = P.make_sample(3, 'target', 'val', 5, (96, 48))
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    c_img, c_lab = P.make_sample(4, 'target', 'val', 5, (96, 48))
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


def test_target_has_camera_effects():
    # Sensor noise + blur: target pixel values inside one flat-labelled region vary more
    # at fine scale than the clean source's flat classes (sky has a smooth gradient in
    # the source, so its horizontal neighbour differences are ~0 there).
    def hdiff(domain):
        d = []
        for i in range(10):
            img, lab = P.make_sample(1, domain, 'val', i, (128, 64))
            m = (lab[:, 1:] == P.SKY) & (lab[:, :-1] == P.SKY)
            d.append(np.abs(np.diff(img.astype(float), axis=1))[m].mean())
        return np.mean(d)
    assert hdiff('target') > 3 * hdiff('source') + 1


def test_generate_benchmark_layout_and_reader(tmp_path):
    root = tmp_path / 'proc'
    meta = P.generate_benchmark(str(root), seed=1, size=(64, 32),
                                counts=dict(train=3, val=2))
    assert meta == P.read_meta(str(root))
    for domain in P.DOMAINS:
        for split, n in (('train', 3), ('val', 2)):
            for i in range(n):
                img_path, seg_path = P.sample_paths(str(root), domain, split, i)
                img = cv2.imread(img_path)[..., ::-1]
                lab = cv2.imread(seg_path, cv2.IMREAD_UNCHANGED)
                ref_img, ref_lab = P.make_sample(1, domain, split, i, (64, 32))
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
    assert sorted(os.listdir(root)) == ['benchmark.json', 'source', 'target']


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

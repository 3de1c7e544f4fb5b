"""Bad data caught with the file named: truncated files, label ids outside the class
table, label/image size mismatch, empty image folders."""
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
from mmengine.config import Config

import mmseg_dida  # noqa: F401
from mmseg_dida.apis.launch import check_data_roots
from mmseg_dida.datasets.procedural import generate_benchmark
from mmseg_dida.datasets.transforms.checks import (
    CheckFiles,
    CheckSegLabel,
    DataError,
    data_error_line,
    dataset_nodes,
    insert_data_checks,
    scan_dataset,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DIDA_CFG = osp.join(REPO, 'configs/dida/daformer_mit_tiny_procedural_dida.py')


@pytest.fixture
def bench(tmp_path, monkeypatch):
    root = tmp_path / 'data' / 'procedural'
    generate_benchmark(str(root), seed=0, size=(64, 32), counts=dict(train=3, val=2))
    monkeypatch.chdir(tmp_path)  # the config's relative data roots
    return tmp_path


def _cfg(bench):
    return Config.fromfile(DIDA_CFG)


def _source_files(bench):
    img_dir = bench / 'data/procedural/source/leftImg8bit/train'
    imgs = sorted(osp.relpath(p, bench) for p in img_dir.rglob('*.png'))  # as named
    labels = [p.replace('leftImg8bit', 'gtFine', 1).replace(
        '_leftImg8bit.png', '_gtFine_labelTrainIds.png') for p in imgs]
    assert all(osp.isfile(p) for p in labels)
    return imgs, labels


def _scan(cfg):
    for path, node in dataset_nodes(cfg):
        scan_dataset(node, path, progress=False)


def test_pipelines_get_checks_and_clean_data_passes(bench):
    cfg = _cfg(bench)
    assert insert_data_checks(cfg) >= 3  # source train, target train, val, ...
    src = cfg.train_dataloader.dataset.source.pipeline
    assert [t['type'] for t in src[:4]] == ['CheckFiles', 'LoadImageFromFile',
                                            'LoadAnnotations', 'CheckSegLabel']
    assert src[3]['num_classes'] == 19
    tgt = cfg.train_dataloader.dataset.target.pipeline  # unlabelled: no label check
    assert [t['type'] for t in tgt] == ['CheckFiles', 'LoadImageFromFile', 'RandomFlip',
                                        'PackUDAInputs']
    assert insert_data_checks(cfg) == 0  # idempotent
    _scan(_cfg(bench))


def test_truncated_image(bench):
    imgs, _ = _source_files(bench)
    data = open(imgs[1], 'rb').read()
    open(imgs[1], 'wb').write(data[:len(data) // 2])
    with pytest.raises(DataError, match=f'image {imgs[1]} is truncated'):
        _scan(_cfg(bench))
    with pytest.raises(DataError, match='is truncated'):
        CheckFiles()(dict(img_path=imgs[1]))


def test_unreadable_and_empty_files(bench):
    imgs, _ = _source_files(bench)
    open(imgs[0], 'wb').close()
    with pytest.raises(DataError, match=f'image {imgs[0]} is empty'):
        CheckFiles()(dict(img_path=imgs[0]))
    os.remove(imgs[2])
    os.mkdir(imgs[2])
    with pytest.raises(DataError, match=f'image {imgs[2]} cannot be read'):
        CheckFiles()(dict(img_path=imgs[2]))


def test_label_id_outside_class_table(bench):
    _, labels = _source_files(bench)
    label = cv2.imread(labels[2], cv2.IMREAD_UNCHANGED)
    label[0, :3] = 77
    cv2.imwrite(labels[2], label)
    with pytest.raises(DataError) as err:
        _scan(_cfg(bench))
    assert str(err.value).startswith(f'label {labels[2]} has id 77 outside the class '
                                     'table (ids 0-18, ignore 255)')


def test_label_size_differs_from_image(bench):
    imgs, labels = _source_files(bench)
    label = cv2.imread(labels[0], cv2.IMREAD_UNCHANGED)
    cv2.imwrite(labels[0], label[:, :40])
    with pytest.raises(DataError, match=f'label {labels[0]} is 40x32 but its image '
                       f'{imgs[0]} is 64x32'):
        _scan(_cfg(bench))


def test_label_checked_against_the_image_file_not_a_resized_image():
    """HRDA's high-resolution test pipeline resizes the image before loading its
    label, which stays at the file's size: the size check uses the file's size
    (``ori_shape``), so that pipeline passes and a wrong label is still caught."""
    check = CheckSegLabel(num_classes=3)
    resized = np.zeros((4, 8, 3), np.uint8)  # the 2x resize of a 2x4 image
    ok = dict(seg_map_path='a.png', img_path='a.jpg', img=resized, ori_shape=(2, 4),
              gt_seg_map=np.zeros((2, 4), np.uint8))
    check(ok)
    bad = dict(ok, seg_map_path='b.png', gt_seg_map=np.zeros((4, 8), np.uint8))
    with pytest.raises(DataError, match='label b.png is 8x4 but its image a.jpg is 4x2'):
        check(bad)


def test_check_seg_label_checks_each_file_once():
    check = CheckSegLabel(num_classes=3)
    img = np.zeros((2, 2, 3), np.uint8)
    ok = dict(seg_map_path='a.png', img=img, gt_seg_map=np.array([[0, 2], [255, 1]]))
    check(dict(ok))
    bad = dict(ok, gt_seg_map=np.array([[0, 3], [4, 1]]))
    check(dict(bad))  # same file: already checked on its first pass
    with pytest.raises(DataError, match='id 3, 4 outside'):
        CheckSegLabel(num_classes=3)(dict(bad))


def test_worker_reraise_keeps_one_line():
    msg = ('Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most '
           'recent call last):\n  File "x.py", line 1\nmmseg_dida.datasets.transforms.'
           'checks.DataError: label a.png has id 77 outside the class table')
    assert data_error_line(DataError(msg)) == 'label a.png has id 77 outside the class table'


def test_empty_image_folder_is_one_error(bench):
    folder = bench / 'data/procedural/target/leftImg8bit/train'
    shutil.rmtree(folder)
    folder.mkdir()
    with pytest.raises(FileNotFoundError) as err:
        check_data_roots(_cfg(bench))
    msg = str(err.value)
    assert "has no image ending in '_leftImg8bit.png' under 'leftImg8bit/train'" in msg
    assert 'train_dataloader.dataset.target.data_root' in msg

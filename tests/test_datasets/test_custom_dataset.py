"""CustomSegDataset: the class table of the config (names, palette, raw label ids),
raw ids mapped to train ids when labels load, ids outside the table caught with the file
named; the template config reads the procedural worked example."""
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmseg.registry import DATASETS

import mmseg_dida  # noqa: F401
from mmseg_dida.datasets.custom import MapLabelIds, label_table
from mmseg_dida.datasets.procedural import generate_benchmark
from mmseg_dida.datasets.transforms.checks import DataError, dataset_nodes, scan_dataset

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TEMPLATE = osp.join(REPO, 'configs/_base_/datasets/uda_custom_template.py')
# The template's table: Cityscapes train ids of the procedural labels -> 5 classes.
RAW_TO_TRAIN = {0: 0, 1: 0, 2: 1, 5: 1, 7: 1, 8: 2, 9: 2, 10: 3, 11: 4, 13: 4, 255: 255}


@pytest.fixture
def example(tmp_path, monkeypatch):
    generate_benchmark(str(tmp_path / 'data' / 'procedural'), seed=0, size=(64, 32),
                       counts=dict(train=3, val=2))
    monkeypatch.chdir(tmp_path)  # the template's relative data roots
    return Config.fromfile(TEMPLATE)


def test_label_table_maps_each_raw_id_once():
    assert label_table(3, [[4, 5], 7, [0]], [9]) == {4: 0, 5: 0, 7: 1, 0: 2, 9: 255}
    cases = [((2, [1]), 'label_ids needs one entry .* per class, 2 in all'),
             ((2, [1, []]), r'label_ids\[1\] is empty'),
             ((2, [1, 'a']), r"label_ids\[1\] holds 'a'"),
             ((2, [1, 70000]), r'label_ids\[1\] holds 70000'),
             ((2, [[1, 2], 2]), 'raw label id 2 is listed twice'),
             ((2, [1, 2], [1]), 'raw label id 1 is listed twice .*train ids 0 and 255')]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            label_table(*args)


def test_template_maps_raw_ids_to_train_ids(example):
    node = example.train_dataloader.dataset.source
    dataset = DATASETS.build(node)
    assert dataset.metainfo['classes'] == ('flat', 'construction', 'nature', 'sky',
                                           'movable')
    assert len(dataset.metainfo['palette']) == 5 and len(dataset) == 3
    assert dataset.label_table == RAW_TO_TRAIN
    names = [type(t).__name__ for t in dataset.pipeline.transforms]
    assert names[:3] == ['LoadImageFromFile', 'LoadAnnotations', 'MapLabelIds']
    loading = DATASETS.build(dict(node, pipeline=[dict(type='LoadImageFromFile'),
                                                  dict(type='LoadAnnotations')]))
    for i in range(len(dataset)):
        loaded = loading.pipeline(loading.get_data_info(i))
        raw = cv2.imread(loaded['seg_map_path'], cv2.IMREAD_UNCHANGED)
        assert len(np.unique(raw)) > 3  # several raw ids, most of them not train ids
        assert np.array_equal(loaded['gt_seg_map'], np.vectorize(RAW_TO_TRAIN.get)(raw))
    target = DATASETS.build(example.train_dataloader.dataset.target)  # unlabelled
    assert 'seg_map_path' not in target.get_data_info(0)


def test_check_data_accepts_the_example_and_names_an_unknown_raw_id(example):
    for path, node in dataset_nodes(example):
        scan_dataset(node, path, progress=False)
    label = sorted(DATASETS.build(dict(example.val_dataloader.dataset, pipeline=[]))
                   .get_data_info(i)['seg_map_path'] for i in range(2))[1]
    raw = cv2.imread(label, cv2.IMREAD_UNCHANGED)
    raw[0, :2] = 3  # wall: a Cityscapes train id the table does not list (and < 5)
    cv2.imwrite(label, raw)
    with pytest.raises(DataError) as err:
        scan_dataset(example.val_dataloader.dataset, 'val', progress=False)
    line = str(err.value)
    assert '\n' not in line
    assert line.startswith(f'label {label}: label id(s) [3] are not in the label table')
    assert 'add the id(s) to label_ids or ignore_ids' in line


def test_map_label_ids_leaves_unlabelled_samples_alone():
    results = dict(img_path='a.png')
    assert MapLabelIds({1: 0})(results) is results


def test_class_table_mistakes_are_one_line(example):
    node = dict(example.train_dataloader.dataset.source, pipeline=[])
    meta = node['metainfo']
    cases = [
        (dict(metainfo=dict(meta, palette=meta['palette'][:4])),
         'metainfo.palette needs one .* per class, 5 in all'),
        (dict(metainfo=dict(meta, classes=('a', 'a', 'b', 'c', 'd'))),
         'metainfo.classes names a class twice'),
        (dict(metainfo=dict(palette=meta['palette'])), 'metainfo.classes must be'),
        (dict(label_ids=[[0, 1], [2]]), 'label_ids needs one entry'),
        (dict(label_ids=None), 'ignore_ids needs label_ids'),
        (dict(reduce_zero_label=True), 'reduce_zero_label and label_ids'),
    ]
    for change, message in cases:
        with pytest.raises(ValueError, match='CustomSegDataset: ' + message):
            DATASETS.build(dict(node, **change))
    # labels that hold train ids already: no mapping step
    dataset = DATASETS.build(dict(node, label_ids=None, ignore_ids=[],
                                  pipeline=[dict(type='LoadAnnotations')]))
    assert dataset.label_table is None
    assert [type(t).__name__ for t in dataset.pipeline.transforms] == ['LoadAnnotations']

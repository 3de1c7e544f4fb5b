"""GTA, SYNTHIA, ACDC and Dark Zurich datasets: file discovery in the published layouts,
classes/palette, label loading, and clear errors on bad input."""
import os

import numpy as np
import pytest
from mmseg.registry import DATASETS

from mmseg_dida.datasets.label_tables import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE

LOAD = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
        dict(type='PackSegInputs')]
PREFIX = dict(
    gta=('GTADataset', dict(img_path='images', seg_map_path='labels')),
    synthia=('SynthiaDataset', dict(img_path='RGB', seg_map_path='GT/LABELS')),
    acdc=('ACDCDataset', dict(img_path='rgb_anon/train', seg_map_path='gt/train')),
    dark_zurich=('CheckedDarkZurichDataset',
                 dict(img_path='rgb_anon/train', seg_map_path='gt/train')),
)


def build(kind, root, pipeline=LOAD, **prefix):
    type_, data_prefix = PREFIX[kind]
    return DATASETS.build(dict(type=type_, data_root=root, pipeline=pipeline,
                               data_prefix=dict(data_prefix, **prefix)))


@pytest.mark.parametrize('kind', ['gta', 'synthia', 'acdc', 'dark_zurich'])
def test_discovery_and_labels(layout, kind):
    labels = [np.full((6, 8), c, np.uint8) for c in (3, 11, 18)]
    labels[1][0, :] = 255
    root, seg_paths = layout(kind, labels)
    ds = build(kind, root)
    assert len(ds) == 3
    assert ds.metainfo['classes'] == CITYSCAPES_CLASSES
    assert [list(p) for p in ds.metainfo['palette']] == CITYSCAPES_PALETTE
    assert [ds.get_data_info(i)['seg_map_path'] for i in range(3)] == seg_paths
    for i, expected in enumerate(labels):
        gt = ds[i]['data_samples'].gt_sem_seg.data[0].numpy()
        np.testing.assert_array_equal(gt, expected)


def test_unlabelled_target(layout):
    root, img_paths = layout('dark_zurich', [np.zeros((4, 4))] * 2, with_labels=False)
    ds = DATASETS.build(dict(
        type='CheckedDarkZurichDataset', data_root=root,
        data_prefix=dict(img_path='rgb_anon/train'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='PackUDAInputs')]))
    assert [ds.get_data_info(i)['img_path'] for i in range(2)] == img_paths
    assert 'seg_map_path' not in ds.get_data_info(0)
    sample = ds[0]['data_samples']
    assert 'gt_sem_seg' not in sample and tuple(ds[0]['inputs'].shape) == (3, 4, 4)


def test_missing_label_names_the_file(layout):
    root, seg_paths = layout('gta', [np.zeros((4, 4))] * 2)
    os.remove(seg_paths[1])
    with pytest.raises(FileNotFoundError, match='00002_labelTrainIds.png'):
        build('gta', root)


def test_empty_or_missing_root(tmp_path):
    os.makedirs(tmp_path / 'synthia' / 'RGB')
    with pytest.raises(FileNotFoundError, match='no image ending in ".png"'):
        build('synthia', str(tmp_path / 'synthia'))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        build('acdc', str(tmp_path / 'nowhere'))

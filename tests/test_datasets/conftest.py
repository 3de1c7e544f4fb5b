"""Tiny datasets in the published folder layouts of the UDA benchmarks (trainId labels,
as the converters leave them)."""
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.registry import DefaultScope
from PIL import Image


def _write(path, array):
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def _image(h, w, seed):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def make_layout(root, kind, labels, split='train', with_labels=True):
    """Write images and trainId labels of ``kind`` under ``root``; return the paths of
    the label files (or images) in sample order."""
    out = []
    for i, lab in enumerate(labels):
        lab = np.asarray(lab, np.uint8)
        h, w = lab.shape
        if kind == 'gta':
            img, seg = f'images/{i + 1:05d}.png', f'labels/{i + 1:05d}_labelTrainIds.png'
        elif kind == 'synthia':
            img, seg = f'RGB/{i:07d}.png', f'GT/LABELS/{i:07d}_labelTrainIds.png'
        elif kind == 'cityscapes':
            stem = f'{split}/city/city_{i:06d}_000019'
            img = f'leftImg8bit/{stem}_leftImg8bit.png'
            seg = f'gtFine/{stem}_gtFine_labelTrainIds.png'
        elif kind == 'acdc':
            img = f'rgb_anon/{split}/GOPR0400_frame_{i:06d}_rgb_anon.png'
            seg = f'gt/{split}/GOPR0400_frame_{i:06d}_gt_labelTrainIds.png'
        elif kind == 'dark_zurich':
            stem = f'{split}/night/GOPR0356/GOPR0356_frame_{i:06d}'
            img, seg = f'rgb_anon/{stem}_rgb_anon.png', f'gt/{stem}_gt_labelTrainIds.png'
        else:
            raise ValueError(kind)
        _write(osp.join(root, img), _image(h, w, i))
        if with_labels:
            _write(osp.join(root, seg), lab)
        out.append(osp.join(root, seg if with_labels else img))
    return out


@pytest.fixture
def layout(tmp_path):
    def make(kind, labels, **kwargs):
        root = str(tmp_path / kind)
        return root, make_layout(root, kind, labels, **kwargs)
    return make


@pytest.fixture(autouse=True)
def mmseg_scope():
    """Build transforms and datasets in mmseg's scope, as configs do."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield

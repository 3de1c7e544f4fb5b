"""tools/convert_datasets/synthia.py on a tiny RAND-CITYSCAPES layout (16-bit labels)."""
import importlib.util
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from PIL import Image

from mmseg_dida.datasets.label_tables import (
    SYNTHIA_16_CLASSES,
    SYNTHIA_ID_TO_TRAINID,
    LabelConversionError,
)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool(name):
    path = osp.join(ROOT, 'tools', 'convert_datasets', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'convert_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_synthia(root, labels):
    os.makedirs(osp.join(root, 'RGB'))
    os.makedirs(osp.join(root, 'GT', 'LABELS'))
    for i, ids in enumerate(labels):
        name = f'{i:07d}.png'
        cv2.imwrite(osp.join(root, 'RGB', name), np.zeros(ids.shape + (3, ), np.uint8))
        # SYNTHIA GT/LABELS: 16-bit, class id in the first (R) channel, instance ids
        # in another; OpenCV writes BGR, so R is the last channel here.
        bgr = np.stack([np.zeros_like(ids), 1000 + ids * 7, ids], -1).astype(np.uint16)
        cv2.imwrite(osp.join(root, 'GT', 'LABELS', name), bgr)


def test_table_values():
    t = SYNTHIA_ID_TO_TRAINID
    # road 3->0, sidewalk 4->1, wall 21->3, sky 1->10, pedestrian 10->11,
    # motorcycle 12->17, bicycle 11->18; void/parking/road-work/lanemarking ignored.
    assert (t[3], t[4], t[21], t[1], t[10], t[12], t[11]) == (0, 1, 3, 10, 11, 17, 18)
    assert t[0] == t[13] == t[14] == t[22] == 255
    assert sorted(v for v in t.values() if v != 255) == list(range(19))
    assert len(SYNTHIA_16_CLASSES) == 16
    assert not {'terrain', 'truck', 'train'} & set(SYNTHIA_16_CLASSES)


def test_convert_synthia(tmp_path):
    root = str(tmp_path / 'synthia')
    ids = np.array([[3, 3, 21, 0], [1, 10, 12, 22]])
    make_synthia(root, [ids])
    load_tool('synthia').main([root, '--nproc', '1'])
    out = np.asarray(
        Image.open(osp.join(root, 'GT', 'LABELS', '0000000_labelTrainIds.png')))
    np.testing.assert_array_equal(out, [[0, 0, 3, 255], [10, 11, 17, 255]])
    with open(osp.join(root, 'sample_class_stats.json')) as f:
        stats = json.load(f)
    assert stats == [{'0': 2, '3': 1, '10': 1, '11': 1, '17': 1,
                      'file': 'GT/LABELS/0000000_labelTrainIds.png'}]


def test_unknown_synthia_id(tmp_path):
    root = str(tmp_path / 'synthia')
    make_synthia(root, [np.array([[3, 23]])])
    with pytest.raises(LabelConversionError, match=r'0000000\.png.*\[23\]'):
        load_tool('synthia').main([root])
    assert sorted(os.listdir(osp.join(root, 'GT', 'LABELS'))) == ['0000000.png']

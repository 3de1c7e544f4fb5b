"""tools/convert_datasets/gta.py on a tiny GTA5 layout with raw (palette) label ids."""
import importlib.util
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmseg_dida.datasets.label_tables import CITYSCAPES_ID_TO_TRAINID, LabelConversionError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool(name):
    path = osp.join(ROOT, 'tools', 'convert_datasets', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'convert_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_palette_png(path, ids):
    img = Image.fromarray(ids.astype(np.uint8), mode='P')
    img.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    img.save(path)


def make_gta(root, labels):
    os.makedirs(osp.join(root, 'images'))
    os.makedirs(osp.join(root, 'labels'))
    for i, ids in enumerate(labels):
        name = f'{i + 1:05d}.png'
        Image.fromarray(np.zeros(ids.shape + (3, ), np.uint8)).save(
            osp.join(root, 'images', name))
        save_palette_png(osp.join(root, 'labels', name), ids)


def test_table_values():
    # Public Cityscapes definitions: road 7->0, car 26->13, bicycle 33->18,
    # parking 9 / caravan 29 / unlabeled 0 -> ignored.
    t = CITYSCAPES_ID_TO_TRAINID
    assert (t[7], t[8], t[26], t[33], t[23], t[24]) == (0, 1, 13, 18, 10, 11)
    assert t[0] == t[9] == t[29] == t[30] == 255
    assert sorted(v for v in t.values() if v != 255) == list(range(19))
    assert sorted(t) == list(range(34))


def test_convert_gta_labels_and_stats(tmp_path):
    root = str(tmp_path / 'gta')
    a = np.array([[7, 7, 26, 0], [33, 9, 26, 26]])  # road x2, car x3, bike, 2 ignored
    b = np.array([[24, 24, 24, 25], [11, 11, 7, 29]])  # person x3, rider, building x2
    make_gta(root, [a, b])
    load_tool('gta').main([root, '--nproc', '2'])

    out_a = np.asarray(Image.open(osp.join(root, 'labels', '00001_labelTrainIds.png')))
    np.testing.assert_array_equal(out_a, [[0, 0, 13, 255], [18, 255, 13, 13]])
    out_b = np.asarray(Image.open(osp.join(root, 'labels', '00002_labelTrainIds.png')))
    np.testing.assert_array_equal(out_b, [[11, 11, 11, 12], [2, 2, 0, 255]])

    with open(osp.join(root, 'sample_class_stats.json')) as f:
        stats = json.load(f)
    assert stats == [
        {'0': 2, '13': 3, '18': 1, 'file': 'labels/00001_labelTrainIds.png'},
        {'0': 1, '2': 2, '11': 3, '12': 1, 'file': 'labels/00002_labelTrainIds.png'},
    ]
    with open(osp.join(root, 'samples_with_class.json')) as f:
        swc = json.load(f)
    assert swc['0'] == [['labels/00001_labelTrainIds.png', 2],
                        ['labels/00002_labelTrainIds.png', 1]]
    assert swc['11'] == [['labels/00002_labelTrainIds.png', 3]]
    assert set(swc) == {'0', '2', '11', '12', '13', '18'}
    assert not [f for f in os.listdir(osp.join(root, 'labels')) if f.endswith('.part')]


def test_rerun_skips_finished_files(tmp_path):
    root = str(tmp_path / 'gta')
    make_gta(root, [np.full((2, 3), 7), np.full((2, 3), 26)])
    tool = load_tool('gta')
    tool.main([root, '--nproc', '1'])
    done = osp.join(root, 'labels', '00001_labelTrainIds.png')
    # Mark the finished file: a re-run must keep it and count what it holds.
    Image.fromarray(np.full((2, 3), 5, np.uint8)).save(done)
    os.remove(osp.join(root, 'labels', '00002_labelTrainIds.png'))
    tool.main([root, '--nproc', '1'])
    np.testing.assert_array_equal(np.asarray(Image.open(done)), 5)
    out2 = np.asarray(Image.open(osp.join(root, 'labels', '00002_labelTrainIds.png')))
    np.testing.assert_array_equal(out2, 13)
    with open(osp.join(root, 'sample_class_stats.json')) as f:
        stats = json.load(f)
    assert [s.get('5') for s in stats] == [6, None]
    assert stats[1]['13'] == 6


def test_unknown_id_names_file_and_writes_nothing(tmp_path):
    root = str(tmp_path / 'gta')
    make_gta(root, [np.array([[7, 40], [41, 7]])])
    with pytest.raises(LabelConversionError, match=r'00001\.png.*\[40, 41\]'):
        load_tool('gta').main([root, '--nproc', '1'])
    assert sorted(os.listdir(osp.join(root, 'labels'))) == ['00001.png']
    assert not osp.exists(osp.join(root, 'sample_class_stats.json'))


def test_empty_root_is_an_error(tmp_path):
    os.makedirs(tmp_path / 'gta' / 'labels')
    with pytest.raises(FileNotFoundError, match='labels'):
        load_tool('gta').main([str(tmp_path / 'gta')])
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_tool('gta').main([str(tmp_path / 'nothing')])

"""tools/convert_datasets/cityscapes.py (labelIds -> labelTrainIds, train-split RCS
statistics) and the generic tools/convert_datasets/rcs_stats.py."""
import importlib.util
import json
import os
import os.path as osp

import numpy as np
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool(name):
    path = osp.join(ROOT, 'tools', 'convert_datasets', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'convert_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_label_ids(root, split, city, name, ids):
    folder = osp.join(root, 'gtFine', split, city)
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, f'{name}_gtFine_labelIds.png')
    Image.fromarray(ids.astype(np.uint8)).save(path)
    return path


def test_convert_cityscapes(tmp_path):
    root = str(tmp_path / 'cityscapes')
    write_label_ids(root, 'train', 'aachen', 'aachen_000000_000019',
                    np.array([[7, 7, 11], [24, 1, 33]]))
    write_label_ids(root, 'val', 'lindau', 'lindau_000000_000019',
                    np.array([[26, 26, 26]]))
    load_tool('cityscapes').main([root, '--nproc', '2'])
    out = np.asarray(Image.open(osp.join(
        root, 'gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png')))
    np.testing.assert_array_equal(out, [[0, 0, 2], [11, 255, 18]])
    out_val = np.asarray(Image.open(osp.join(
        root, 'gtFine/val/lindau/lindau_000000_000019_gtFine_labelTrainIds.png')))
    np.testing.assert_array_equal(out_val, 13)
    with open(osp.join(root, 'sample_class_stats.json')) as f:
        stats = json.load(f)
    # Only the train split enters the RCS statistics.
    assert stats == [{'0': 2, '2': 1, '11': 1, '18': 1, 'file':
                      'gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png'}]


def test_rcs_stats_of_any_folder(tmp_path):
    folder = tmp_path / 'proc' / 'gtFine' / 'train' / 'city'
    os.makedirs(folder)
    Image.fromarray(np.array([[1, 1, 255]], np.uint8)).save(
        folder / 'a_gtFine_labelTrainIds.png')
    Image.fromarray(np.array([[1, 4, 4]], np.uint8)).save(
        folder / 'b_gtFine_labelTrainIds.png')
    Image.fromarray(np.array([[9, 9, 9]], np.uint8)).save(folder / 'c_other.png')
    out = str(tmp_path / 'proc')
    load_tool('rcs_stats').main([str(tmp_path / 'proc' / 'gtFine'), '-o', out])
    with open(osp.join(out, 'samples_with_class.json')) as f:
        swc = json.load(f)
    assert swc == {
        '1': [['gtFine/train/city/a_gtFine_labelTrainIds.png', 2],
              ['gtFine/train/city/b_gtFine_labelTrainIds.png', 1]],
        '4': [['gtFine/train/city/b_gtFine_labelTrainIds.png', 2]],
    }


def test_rcs_stats_refuses_colour_labels_and_unknown_ids(tmp_path, capsys):
    """A colour (RGB) label or train ids outside the table are one error line naming
    the file, exit 2, and no statistics written (they were counted as class 0 or
    silently before)."""
    tool = load_tool('rcs_stats')
    for case, array in (
            ('rgb', np.full((8, 16, 3), 70, np.uint8)),
            ('ids', np.array([[0, 1, 19, 40]] * 4, np.uint8))):
        folder = tmp_path / case / 'gtFine'
        folder.mkdir(parents=True)
        Image.fromarray(array).save(folder / f'x_{case}_labelTrainIds.png')
        out = tmp_path / case / 'out'
        out.mkdir()
        assert tool.main([str(folder), '-o', str(out)]) == 2
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith('error:')]
        assert len(lines) == 1 and f'x_{case}_labelTrainIds.png' in lines[0], err
        assert ('mode RGB' in lines[0]) if case == 'rgb' else ('[19, 40]' in lines[0])
        assert os.listdir(out) == []

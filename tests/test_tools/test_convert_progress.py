"""The dataset converters say what they convert, show a progress bar with ETA and
end with what they wrote."""
import importlib.util
import os.path as osp
import re

import numpy as np

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _make_gta():
    spec = importlib.util.spec_from_file_location(
        'convert_gta_test', osp.join(osp.dirname(__file__), 'test_convert_gta.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_gta


def test_gta_and_rcs_stats_progress(tmp_path, run_tool):
    root = str(tmp_path / 'gta')
    _make_gta()(root, [np.array([[7, 7, 26, 0], [33, 9, 26, 26]])] * 5)
    res = run_tool([osp.join(REPO, 'tools/convert_datasets/gta.py'), root,
                    '--nproc', '2'], cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    assert f'converting 5 GTA label files in {root}/labels (2 processes):' in out
    assert re.search(r'5/5, [\d.]+ task/s, elapsed: \d+s, ETA:\s+\d+s', out), out
    assert re.search(r'done: 5 \*_labelTrainIds.png in .*; RCS statistics of 5 files',
                     out)
    res = run_tool([osp.join(REPO, 'tools/convert_datasets/rcs_stats.py'),
                    osp.join(root, 'labels'), '-o', str(tmp_path / 'rcs')],
                   cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'counting class pixels of 5 label files' in res.stdout
    assert re.search(r'5/5, .*ETA', res.stdout) and 'done: RCS statistics of 5' in (
        res.stdout)


def test_an_error_line_is_not_glued_to_the_progress_bar(tmp_path, run_tool):
    """A bad label stops the count with one error line that starts its own line of
    the terminal (the bar's line is ended first)."""
    from PIL import Image
    folder = tmp_path / 'labels'
    folder.mkdir()
    for i in range(3):  # the third file is a colour image
        label = np.full((8, 16, 3), 70, np.uint8) if i == 2 else np.zeros((8, 16),
                                                                          np.uint8)
        Image.fromarray(label).save(folder / f'x{i}_labelTrainIds.png')
    res = run_tool([osp.join(REPO, 'tools/convert_datasets/rcs_stats.py'), str(folder),
                    '-o', str(tmp_path / 'rcs')], cwd=str(tmp_path))
    assert res.returncode == 2
    assert res.stdout.endswith('\n'), repr(res.stdout[-200:])
    assert res.stderr.startswith('error: ') and 'mode RGB' in res.stderr

"""tools/analysis/pseudo_label_curve.py: when each class arrives in the pseudo labels,
read from the records PseudoLabelStatsHook writes (made here by the hook itself from
confusion matrices whose IoUs are known)."""
import csv
import json

import numpy as np
import pytest

from mmseg_dida.engine.hooks.pseudo_label_hook import PseudoLabelStatsHook
from tests.helpers.tools import load_tool

curve = load_tool('tools/analysis/pseudo_label_curve.py')
CLASSES = ('road', 'pole', 'traffic sign')


def _record(iteration, pole_tp, sign_tp):
    """The hook's record of a window where road is all right, pole has 10 pixels of
    which ``pole_tp`` are labelled pole (the rest road) and sign 20 pixels of which
    ``sign_tp`` are (the rest road): IoU pole = tp / 10, sign = tp / 20 (no false
    positives)."""
    hook = PseudoLabelStatsHook()
    hook._reset(len(CLASSES))
    conf = np.zeros((3, 3), np.int64)
    conf[0, 0] = 100
    conf[1, 1], conf[1, 0] = pole_tp, 10 - pole_tp
    conf[2, 2], conf[2, 0] = sign_tp, 20 - sign_tp
    hook.confusion += conf
    hook.pl_count += conf.sum(0)
    return hook.summary(iteration, CLASSES)


def _work_dir(tmp_path, name, records):
    d = tmp_path / name
    d.mkdir()
    (d / curve.STATS_FILENAME).write_text(''.join(json.dumps(r) + '\n' for r in records))
    return d


def test_first_iteration_and_values_at_iterations(tmp_path):
    d = _work_dir(tmp_path, 'run', [_record(500, 0, 0), _record(1000, 1, 0),
                                    _record(1500, 3, 2), _record(2000, 6, 8)])
    records = curve.load_records(str(d))
    assert curve.class_iou(records[2], 'pole') == pytest.approx(30.0)
    assert curve.class_iou(records[3], 'traffic sign') == pytest.approx(40.0)
    row = curve.curve_row(records, ['pole', 'traffic sign'], [1500, 2000, 2500],
                          [('pole', 20.0), ('traffic sign', 5.0), ('traffic sign', 50.0)])
    assert row['first.pole>=20'] == 1500
    assert row['first.traffic sign>=5'] == 1500    # 10.0 at 1500, 0 before
    assert row['first.traffic sign>=50'] is None   # never reached
    assert row['pole@1500'] == pytest.approx(30.0)
    assert row['pole@2000'] == pytest.approx(60.0)
    assert row['pole@2500'] is None                # no record at 2500
    # pixel accuracy of the last window: (100 + 6 + 8) / 130
    assert row['pl_acc'] == pytest.approx(100 * 114 / 130, abs=1e-3)
    assert row['last_iter'] == 2000


def test_a_resumed_runs_later_record_of_an_iteration_replaces_the_earlier(tmp_path):
    d = _work_dir(tmp_path, 'run', [_record(500, 0, 0), _record(1000, 1, 0),
                                    _record(1000, 5, 0), _record(500, 2, 0)])
    records = curve.load_records(str(d))
    assert [r['iter'] for r in records] == [500, 1000]
    assert curve.class_iou(records[0], 'pole') == pytest.approx(20.0)
    assert curve.class_iou(records[1], 'pole') == pytest.approx(50.0)


def test_main_prints_one_row_per_run_and_writes_the_csv(tmp_path, capsys):
    a = _work_dir(tmp_path, 'DAFormer_s0', [_record(500, 0, 0), _record(1000, 4, 1)])
    b = _work_dir(tmp_path, 'DAFormer+DiDA_s0', [_record(500, 2, 0),
                                                 _record(1000, 3, 0)])
    out = tmp_path / 'curve.csv'
    assert curve.main([str(a), str(b), '--at', '500', '1000', '--first', 'pole=20',
                       'traffic sign=5', '--csv', str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith('| run | pole >= 20 from | traffic sign >= 5 from |')
    # sign 1 of 20 pixels at 1000: IoU 5.0 reaches 5; accuracy (100 + 4 + 1) / 130
    assert lines[2] == '| DAFormer_s0 | 1000 | 1000 | 0.0 | 40.0 | 0.0 | 5.0 | 80.8 | 1000 |'
    assert lines[3].startswith('| DAFormer+DiDA_s0 | 500 | - | 20.0 | 30.0 |')
    rows = list(csv.DictReader(open(out)))
    assert [r['run'] for r in rows] == ['DAFormer_s0', 'DAFormer+DiDA_s0']
    assert rows[1]['first.pole>=20'] == '500'


def test_bad_input_gets_one_clear_error(tmp_path, capsys):
    assert curve.main([str(tmp_path)]) == 1
    assert f'no {curve.STATS_FILENAME} in {tmp_path}' in capsys.readouterr().err
    d = _work_dir(tmp_path, 'run', [_record(500, 0, 0)])
    assert curve.main([str(d), '--classes', 'bicycle']) == 1
    assert "class 'bicycle' is not among" in capsys.readouterr().err
    (d / curve.STATS_FILENAME).write_text('{"iter": 500}\nnot json\n')
    assert curve.main([str(d)]) == 1
    assert 'line 2: not a pseudo-label record' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        curve.main([str(d), '--first', 'pole'])

"""tools/benchmarks/gpu_check.sh: its dry run (CPU, tiny sizes) runs every part and
writes the JSON and markdown report; a failing part is recorded and the rest go on."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from tests.helpers.tools import load_tool

gpu_check = load_tool('tools/benchmarks/gpu_check.py')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

PARTS = ['env', 'tests', 'memory', 'step_times', 'toy_job', 'auto_fit', 'compile_times']


def test_dry_run_writes_every_part(tmp_path):
    out = tmp_path / 'check'
    env = dict(os.environ, DRY_RUN='1', OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='',
               PYTHON=sys.executable)
    env.pop('OUT', None)
    res = subprocess.run(['bash', osp.join(REPO, 'tools/benchmarks/gpu_check.sh'),
                          str(out)], env=env, capture_output=True, text=True,
                         timeout=3000)
    log = res.stdout + res.stderr
    report = json.loads((out / 'gpu_check.json').read_text())
    print(json.dumps({k: (v['status'], v['seconds']) for k, v in
                      report['parts'].items()}), f"total {report['seconds']} s")
    assert report['dry_run'] and list(report['parts']) == PARTS
    assert all(p['status'] == 'ok' for p in report['parts'].values()), (
        json.dumps(report['parts'], indent=1)[-4000:], log[-2000:])
    assert res.returncode == 0
    parts = report['parts']
    assert parts['env']['torch']
    assert parts['tests']['cpu_pinned']['counts'].get('passed', 0) >= 5
    rows = parts['memory']['rows']
    assert len(rows) == 2 and {r['memory_saving'] for r in rows} == {None, 'none'}
    for r in rows:  # estimate on fake tensors vs the same step on CPU tensors
        assert r['measured_gb'] > 0 and abs(r['error_pct']) < 0.1
    st = parts['step_times']['variants']  # each variant under every speed setting
    assert set(st) == {f'{v}{s}' for v in ('daformer', 'dida') for s in (
        '', '+channels_last', '+cudnn_benchmark', '+foreach+fp32')}
    assert all(v['rounds'] == 2 and v['step_s_median'] > 0 for v in st.values())
    peak = parts['step_times']['peak']
    assert peak['source'] == 'measured' and peak['dtype'] == 'float32'
    for name, v in st.items():  # achieved rate and fraction of the measured peak
        assert v['tflops'] == pytest.approx(v['gflop'] / 1e3 / v['step_s_median'])
        assert v['peak_fraction'] > 0, name  # by wall time: load moves it either way
        assert 0 < v['peak_fraction_cpu'] < 1, name  # by the processes' CPU time
        assert v['speed_ratio_median'] > 0
    assert st['dida']['flop_ratio'] > 2 and st['daformer']['speed_ratio_median'] == 1
    assert parts['step_times']['dida_amp_speedup_over_fp32'] > 0
    ct = parts['compile_times']
    assert set(ct['variants']) == {'daformer', 'daformer+compile', 'dida',
                                   'dida+compile'}
    assert all(v['rounds'] == 2 for v in ct['variants'].values())
    assert ct['peak']['tflops'] == pytest.approx(peak['tflops'])  # not measured again
    assert parts['toy_job']['fp32']['s_per_iter'] > 0
    assert gpu_check.PARTS == PARTS
    fit = parts['auto_fit']['rows']  # the CPU never runs out: 'auto' stays at its first
    assert [(r['used'], r['amp']) for r in fit] == [('none', False)]
    assert fit[0]['measured_gb'] > 0
    md = (out / 'gpu_check.md').read_text()
    for heading in ('# GPU check (dry run', '## Tests', '## Peak memory',
                    '## Step time', '## Step time, torch.compile', '## Toy main job',
                    "## memory_saving='auto'", 'faster than its fp32 step'):
        assert heading in md, md
    assert (out / 'logs' / 'memory_measured.log').is_file()


def test_a_failing_part_is_recorded_and_the_rest_run(tmp_path, monkeypatch):
    def broken(check):
        raise RuntimeError('no such card')

    monkeypatch.setattr(gpu_check, 'part_tests', broken)
    rc = gpu_check.main(['--out', str(tmp_path), '--dry-run', '--parts', 'tests',
                         'env'])
    assert rc == 1
    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert report['parts']['tests']['status'] == 'error'
    assert 'no such card' in report['parts']['tests']['error']
    assert report['parts']['env']['status'] == 'ok'
    md = (tmp_path / 'gpu_check.md').read_text()
    assert '| tests | error |' in md and '| env | ok |' in md


def test_budget_spent_skips_the_remaining_parts(tmp_path):
    rc = gpu_check.main(['--out', str(tmp_path), '--dry-run', '--budget-s', '1',
                         '--parts', 'env'])
    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert rc == 1 and report['parts']['env']['status'] == 'skipped'

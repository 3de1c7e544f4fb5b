"""tools/multi_seed.py: aggregation of fabricated runs with known mean/std (per-class
IoU from logged keys and from the log text), curves written, finished seeds reused,
one Slurm job per seed through tools/slurm_train.sh."""
import csv
import importlib.util
import json
import math
import os
import os.path as osp
import re
import stat
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MAX_ITERS = 10
CLASSES = ('road', 'pole', 'traffic sign')


def _tool():
    spec = importlib.util.spec_from_file_location(
        'multi_seed_tool', osp.join(REPO, 'tools', 'multi_seed.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _config(tmp_path, name='toy_cfg'):
    path = tmp_path / f'{name}.py'
    path.write_text(f'train_cfg = dict(type="IterBasedTrainLoop", max_iters={MAX_ITERS})\n')
    return str(path)


def _table(values):
    """mmseg's per-class table as its logger writes it."""
    lines = ['2026/11/29 15:36:05 - mmengine - INFO - per class results:',
             '2026/11/29 15:36:05 - mmengine - INFO - ',
             '+--------------+-------+-------+', '|    Class     |  IoU  |  Acc  |',
             '+--------------+-------+-------+']
    for cls, v in zip(CLASSES, values):
        v = 'nan' if math.isnan(v) else f'{v:.2f}'
        lines.append(f'| {cls:^12} | {v:^5} | 99.0  |')
    return lines + ['+--------------+-------+-------+']


def fabricate_run(work_dir, miou, src_miou, iou, src_iou, as_keys, seed=0,
                  checkpoint=True):
    """A finished run: training records (two loss terms, pseudo_weight), an early
    and a final validation, per-class IoU either as logged keys or only in the
    log text, and the final checkpoint."""
    ts = '20260101_000000'
    run = osp.join(work_dir, ts)
    os.makedirs(osp.join(run, 'vis_data'), exist_ok=True)
    records = [{'src.decode.loss_ce': 2.0 / s, 'mix.decode.loss_ce': 1.0 / s,
                'loss': 3.0 / s, 'pseudo_weight': s / MAX_ITERS + seed * 0.01,
                'lr': 1e-3, 'iter': s, 'step': s} for s in (2, 4, 6, 8, 10)]
    early = {'mIoU': miou / 2, 'source/mIoU': src_miou / 2, 'step': 5}
    final = {'aAcc': 90.0, 'mIoU': miou, 'source/mIoU': src_miou, 'time': 0.1,
             'step': MAX_ITERS}
    if as_keys:
        for cls, v, sv in zip(CLASSES, iou, src_iou):
            final[f'IoU.{cls}'] = v
            final[f'source/IoU.{cls}'] = sv
    with open(osp.join(run, 'vis_data', 'scalars.json'), 'w') as f:
        for rec in records[:2] + [early] + records[2:] + [final]:
            f.write(json.dumps(rec) + '\n')
    log = []
    for tables, rec in (((iou, src_iou), early), ((iou, src_iou), final)):
        for values in tables:
            log += _table(values)
        log.append('2026/11/29 15:36:06 - mmengine - INFO - Iter(val) [13/13]    aAcc: '
                   f"90.0000  mIoU: {rec['mIoU']:.4f}  mAcc: 95.0000  source/aAcc: "
                   f"91.0000  source/mIoU: {rec['source/mIoU']:.4f}  data_time: 0.01")
    with open(osp.join(run, f'{ts}.log'), 'w') as f:
        f.write('\n'.join(log) + '\n')
    if checkpoint:
        open(osp.join(work_dir, f'iter_{MAX_ITERS}.pth'), 'wb').close()


# seed -> (mIoU, source/mIoU, per-class IoU, source per-class IoU, logged as keys)
RUNS = {
    0: (70.0, 80.0, (90.0, 40.0, math.nan), (95.0, 50.0, 60.0), True),
    1: (72.0, 81.0, (91.0, 44.0, math.nan), (96.0, 52.0, 61.0), False),
    2: (74.0, 85.0, (95.0, 45.0, 30.0), (97.0, 54.0, 65.0), False),
}


def _read_csv(path):
    with open(path) as f:
        return {(r['config'], r['seed']): r for r in csv.DictReader(f)}


def test_aggregation_of_fabricated_runs(tmp_path, monkeypatch, capsys):
    tool = _tool()
    config = _config(tmp_path)
    out = tmp_path / 'out'
    for seed, (m, sm, iou, siou, keys) in RUNS.items():
        fabricate_run(str(out / 'toy_cfg' / f'seed{seed}'), m, sm, iou, siou, keys, seed)

    def no_training(run):
        raise AssertionError(f'{run.label} was trained although it is finished')

    monkeypatch.setattr(tool, 'train_local', no_training)
    assert tool.main([config, '--seeds', '0', '1', '2', '--out-dir', str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count('reused') == 3
    rows = _read_csv(out / 'results.csv')
    mean, std = rows[('toy_cfg', 'mean')], rows[('toy_cfg', 'std')]
    # mIoU 70, 72, 74: mean 72, sample std 2; source 80, 81, 85: 82, sqrt(7)
    assert float(mean['mIoU']) == pytest.approx(72.0)
    assert float(std['mIoU']) == pytest.approx(2.0)
    assert float(std['source/mIoU']) == pytest.approx(math.sqrt(7.0), abs=1e-4)
    # per class, from keys (seed 0) and from the log text (seeds 1, 2) alike
    assert float(rows[('toy_cfg', '1')]['IoU.pole']) == pytest.approx(44.0)
    assert float(mean['IoU.road']) == pytest.approx(92.0)
    assert float(std['IoU.road']) == pytest.approx(math.sqrt(7.0), abs=1e-4)
    assert float(mean['IoU.pole']) == pytest.approx(43.0)
    # a class absent (NaN) in seeds 0 and 1: its statistics are seed 2's alone
    assert rows[('toy_cfg', '0')]['IoU.traffic sign'] == ''
    assert float(mean['IoU.traffic sign']) == pytest.approx(30.0)
    assert float(std['IoU.traffic sign']) == 0.0
    assert float(mean['source/IoU.traffic sign']) == pytest.approx(62.0)
    assert float(std['source/IoU.pole']) == pytest.approx(2.0)
    md = (out / 'results.md').read_text()
    assert '| toy_cfg | 0, 1, 2 | 72.00 +- 2.00 | 82.00 +- 2.65 |' in md
    assert '70.00 / 72.00 / 74.00' in md
    assert '| pole | 43.00 +- 2.65 |' in md  # target table: 40, 44, 45
    assert '## Per-class IoU, source' in md and '| pole | 52.00 +- 2.00 |' in md
    assert md in printed
    png = out / 'curves_toy_cfg.png'
    assert png.is_file() and png.stat().st_size > 10_000
    assert not [p for p in os.listdir(out) if '.tmp' in p]


def test_curve_keys_and_parse_of_log_text(tmp_path):
    from mmseg_dida.apis.run_report.curves import curve_keys, plot_curves
    from mmseg_dida.apis.run_report.logs import final_metrics, read_scalars
    fabricate_run(str(tmp_path / 'r'), 70.0, 80.0, *RUNS[1][2:4], as_keys=False)
    train, val = read_scalars(str(tmp_path / 'r'))
    assert [r['step'] for r in train] == [2, 4, 6, 8, 10]
    assert [r['step'] for r in val] == [5, 10]
    keys = curve_keys(train, val)
    assert keys == ['src.decode.loss_ce', 'mix.decode.loss_ce', 'loss',
                    'pseudo_weight', 'mIoU', 'source/mIoU']
    assert plot_curves({1: (train, val)}, str(tmp_path / 'c.png')) == keys
    assert (tmp_path / 'c.png').stat().st_size > 0
    m = final_metrics(str(tmp_path / 'r'))
    assert m['mIoU'] == 70.0 and m['IoU.road'] == 91.0
    assert math.isnan(m['IoU.traffic sign']) and m['source/IoU.traffic sign'] == 61.0


def test_unfinished_seed_is_trained_finished_ones_reused(tmp_path, monkeypatch):
    tool = _tool()
    config = _config(tmp_path)
    out = tmp_path / 'out'
    fabricate_run(str(out / 'toy_cfg' / 'seed0'), *RUNS[0])
    trained = []

    def fake_training(run):
        trained.append((run.seed, run.options))
        fabricate_run(run.work_dir, *RUNS[1])

    monkeypatch.setattr(tool, 'train_local', fake_training)
    rc = tool.main([config, '--seeds', '0', '1', '--out-dir', str(out), '--iters',
                    str(MAX_ITERS), '--cfg-options', 'a.b=1'])
    assert rc == 0
    assert [s for s, _ in trained] == [1]
    assert trained[0][1][:2] == ['randomness.seed=1', 'a.b=1']
    assert f'train_cfg.max_iters={MAX_ITERS}' in trained[0][1]
    rows = _read_csv(out / 'results.csv')
    assert float(rows[('toy_cfg', 'mean')]['mIoU']) == pytest.approx(71.0)


def test_one_slurm_job_per_seed(tmp_path, monkeypatch, capsys):
    """A stand-in srun (the real one needs a cluster) records each job and
    fabricates its run where train.py would have written it."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    calls = tmp_path / 'calls.jsonl'
    srun = bin_dir / 'srun'
    srun.write_text(f'''#!{sys.executable}
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location('test_multi_seed', {osp.abspath(__file__)!r})
test_multi_seed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(test_multi_seed)
RUNS, fabricate_run = test_multi_seed.RUNS, test_multi_seed.fabricate_run
args = sys.argv[1:]
with open({str(calls)!r}, 'a') as f:
    f.write(json.dumps(args) + '\\n')
work_dir = args[args.index('--work-dir') + 1]
seed = int([a for a in args if a.startswith('randomness.seed=')][0].split('=')[1])
fabricate_run(work_dir, *RUNS[seed], seed=seed)
''')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    monkeypatch.setenv('GPUS', '1')
    monkeypatch.setenv('GPUS_PER_NODE', '1')
    monkeypatch.setenv('GRES', '')
    tool = _tool()
    config = _config(tmp_path)
    out = tmp_path / 'out'
    rc = tool.main([config, '--seeds', '0', '1', '2', '--out-dir', str(out),
                    '--slurm', 'debug'])
    assert rc == 0, capsys.readouterr()
    jobs = [json.loads(line) for line in open(calls)]
    assert len(jobs) == 3
    names = sorted(a.split('=')[1] for j in jobs for a in j if a.startswith('--job-name'))
    assert names == ['toy_cfg_s0', 'toy_cfg_s1', 'toy_cfg_s2']
    assert all(['-p', 'debug'] == j[:2] and '--launcher=slurm' in j for j in jobs)
    assert float(_read_csv(out / 'results.csv')[('toy_cfg', 'mean')]['mIoU']) == 72.0
    # a second call reuses all three
    capsys.readouterr()
    assert tool.main([config, '--seeds', '0', '1', '2', '--out-dir', str(out),
                      '--slurm', 'debug']) == 0
    assert len(open(calls).readlines()) == 3


def test_bad_arguments_are_one_line(tmp_path, capsys):
    tool = _tool()
    a = _config(tmp_path)
    (tmp_path / 'sub').mkdir()
    b = _config(tmp_path / 'sub')
    assert tool.main([a, b, '--out-dir', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'same name' in err
    assert tool.main([str(tmp_path / 'nope.py'), '--out-dir', str(tmp_path / 'o')]) == 2
    assert 'does not exist' in capsys.readouterr().err
    assert tool.main([a, '--report-only', '--out-dir', str(tmp_path / 'o')]) == 2
    assert 'no finished run' in capsys.readouterr().err
    assert not osp.exists(tmp_path / 'o')


def test_real_runs_end_to_end(tiny_benchmark, run_tool):
    """A seed of the procedural DAFormer config, 2 iterations, through the command
    line (the statistics are tested on fabricated runs above): progress on the
    console, per-class IoU from the metric's keys, the curves."""
    loaders = ('train_dataloader', 'val_dataloader', 'val_cfg.extra.source.dataloader')
    fast = ['model.segmentor.data_preprocessor.size=(64,128)',
            'default_hooks.logger.interval=1'] + [
        f'{dl}.{k}' for dl in loaders for k in ('num_workers=0',
                                                'persistent_workers=False')]
    out = tiny_benchmark / 'multi_seed'
    res = run_tool([osp.join(REPO, 'tools/multi_seed.py'),
                    osp.join(REPO, 'configs/benchmark/daformer_mit_tiny_procedural.py'),
                    '--seeds', '3', '--iters', '2', '--out-dir', str(out),
                    '--cfg-options'] + fast, cwd=tiny_benchmark)
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.search(r'\[daformer_mit_tiny_procedural seed 3\] .*Iter\(train\) '
                     r'\[2/2\].*eta: .*loss', res.stdout), res.stdout[-3000:]
    rows = _read_csv(out / 'results.csv')
    run = rows[('daformer_mit_tiny_procedural', '3')]
    assert rows[('daformer_mit_tiny_procedural', 'mean')]['mIoU'] == run['mIoU'] != ''
    assert any(k.startswith('IoU.') and v for k, v in run.items())
    assert any(k.startswith('source/IoU.') and v for k, v in run.items())
    assert (out / 'curves_daformer_mit_tiny_procedural.png').stat().st_size > 0

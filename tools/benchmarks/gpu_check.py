"""Everything a lent GPU is for, in one run of at most ``--budget-s`` seconds (9 min):

1. ``env``: torch, CUDA, the card and the code's commit;
2. ``tests``: the CUDA tests (``pytest -k cuda``) and the tests that pin themselves to
   the CPU where a GPU is visible (``tests/test_utils/test_launch.py``);
3. ``memory``: peak memory of one AMP training step of DAFormer, HRDA and MIC(HRDA),
   each +- DiDA (MiT-B5, the paper's crops, the configs' DiDA memory mode), measured
   (``torch.cuda.max_memory_allocated``, each in its own process, three at once) next
   to the CPU estimate on fake tensors (``gpu_memory.py``, computed meanwhile on the
   CPU cores) and the estimate's error;
4. ``step_times``: DAFormer and DAFormer + DiDA MiT-B5 at 512x512, AMP, each variant in
   its own process timed under the speed settings of STEP_SPEEDS (the default: fused
   AdamW; + channels_last; + cudnn.benchmark; and the fp32 step with foreach AdamW
   that training ran before the speed options), interleaved over 3 rounds, the
   median (``dida_overhead.py --speed``): per row step time, DiDA / DAFormer, the
   ratio to the default setting, achieved TFLOP/s and the fraction of the card's
   peak (a bf16 matrix product measured in the same part), and the speed-up of the
   AMP step over the fp32 one (issue 18's goal: >= 3x, DiDA / DAFormer <= 1.3x);
5. ``toy_job``: seconds per iteration of the toy main job (DAFormer + DiDA on the
   procedural benchmark, ``tools/train.py``), fp32 and ``--amp``;
6. ``auto_fit``: HRDA + DiDA (MiT-B5, the paper's crops, ``memory_saving='auto'``) in
   24 GB of the card (``--memory-limit-gb 24``), fp32 and AMP: the mode it settles at
   after its out-of-memory replays and that mode's measured peak (the estimates predict
   ``per_domain`` with AMP);
7. ``compile_times``: the same two models, default vs ``torch.compile`` of the
   encoders (inductor), 2 interleaved rounds. Last, on whatever of the budget the
   other parts leave (at most its limit): a cold inductor compile of MiT-B5 takes
   minutes of CPU and its cost on the lent card is unknown, so it must not take the
   other parts' time; the JSON of the processes that finished is kept when it is cut.

Every part has its own time limit and records its error instead of stopping the rest.
Writes ``gpu_check.json`` and ``gpu_check.md`` (and every part's log under ``logs/``)
into the output folder. ``--dry-run``: the same parts on the CPU at tiny sizes (the
tiny benchmark model, 64x128 crops, 1-4 iterations; "measured" memory is counted on
real CPU tensors), which is what the test suite runs.

Usage (on the GPU machine, from the repository root)::

    bash tools/benchmarks/gpu_check.sh [OUT_DIR]        # OUT_DIR default: $OUT or gpu_check
"""
import argparse
import json
import os
import os.path as osp
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback
from typing import Callable, Dict, List, Optional

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
GiB = 2**30
PARTS = ['env', 'tests', 'memory', 'step_times', 'toy_job', 'auto_fit', 'compile_times']

MEMORY_CONFIGS = [
    'configs/daformer/daformer_mitb5_gta2cs.py',
    'configs/dida/daformer_mitb5_gta2cs_dida.py',
    'configs/hrda/hrda_mitb5_gta2cs.py',
    'configs/dida/hrda_mitb5_gta2cs_dida.py',
    'configs/mic/mic_hrda_mitb5_gta2cs.py',
    'configs/dida/mic_hrda_mitb5_gta2cs_dida.py',
]
DRY_MEMORY_CONFIGS = [
    'configs/benchmark/daformer_mit_tiny_procedural.py',
    'configs/dida/daformer_mit_tiny_procedural_dida.py',
]
TOY_CONFIG = 'configs/dida/daformer_mit_tiny_procedural_dida.py'
AUTO_FIT_CONFIG = 'configs/dida/hrda_mitb5_gta2cs_dida.py'
AUTO_FIT_GB = 24
#: the speed settings of the step_times part (dida_overhead.py --speed) and of
#: compile_times (dida_overhead's canonical names); FP32_BEFORE is the step before the
#: speed options (fp32, foreach AdamW)
FP32_BEFORE = 'foreach+fp32'
STEP_SPEEDS = ['default', 'channels_last', 'cudnn_benchmark', FP32_BEFORE]
COMPILE_SPEEDS = ['default', 'compile']
#: seconds each part may take (GPU run; the dry run on a slow shared CPU gets more);
#: compile_times runs last on what the others leave (see the module docstring)
LIMITS = dict(env=15, tests=75, memory=135, step_times=130, toy_job=80, auto_fit=100,
              compile_times=150)
DRY_LIMITS = dict(env=60, tests=600, memory=600, step_times=900, toy_job=600,
                  auto_fit=600, compile_times=900)


class Check:
    """The run: output folder, mode, time budget, and the results of the parts."""

    def __init__(self, out: str, dry_run: bool, budget_s: float):
        self.out = osp.abspath(out)
        self.logs = osp.join(self.out, 'logs')
        os.makedirs(self.logs, exist_ok=True)
        self.dry_run = dry_run
        self.start = time.time()
        self.budget_s = budget_s
        self.limits = DRY_LIMITS if dry_run else LIMITS
        self.parts: Dict[str, dict] = {}
        self.background: Dict[str, subprocess.Popen] = {}

    def left(self) -> float:
        return self.budget_s - (time.time() - self.start)

    def run(self, cmd: List[str], name: str, limit: float, cwd: str = REPO,
            env: Optional[dict] = None) -> subprocess.CompletedProcess:
        """Run ``cmd`` with a time limit (the part's, within the budget); its output
        goes to logs/<name>.log. Raises on a non-zero exit or a timeout."""
        log = osp.join(self.logs, f'{name}.log')
        limit = max(1.0, min(limit, self.left()))
        full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
        with open(log, 'w') as f:
            f.write('$ ' + ' '.join(cmd) + '\n')
            f.flush()
            try:
                res = subprocess.run(cmd, cwd=cwd, env=full_env, stdout=f,
                                     stderr=subprocess.STDOUT, timeout=limit, text=True)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f'{name}: timed out after {limit:.0f} s; see '
                                   f'{osp.relpath(log, self.out)}') from None
        if res.returncode:
            raise RuntimeError(f'{name}: exit {res.returncode}; see '
                               f'{osp.relpath(log, self.out)}: {_tail(log)}')
        return res

    def start_background(self, cmd: List[str], name: str) -> None:
        """Start ``cmd`` now (one thread; on a GPU run at low priority, beside the
        timed parts), collected by :meth:`wait`."""
        log = open(osp.join(self.logs, f'{name}.log'), 'w')
        log.write('$ ' + ' '.join(cmd) + '\n')
        log.flush()
        env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
        nice = [] if self.dry_run else ['nice', '-n', '10']
        self.background[name] = subprocess.Popen(
            nice + cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait(self, name: str, limit: float) -> None:
        proc = self.background.pop(name)
        try:
            rc = proc.wait(timeout=max(1.0, min(limit, self.left())))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f'{name}: still running at its time limit') from None
        if rc:
            log = osp.join(self.logs, f'{name}.log')
            raise RuntimeError(f'{name}: exit {rc}: {_tail(log)}')

    def part(self, name: str, fn: Callable[['Check'], dict]) -> None:
        """Run one part; its result or its error goes into the report."""
        t0 = time.time()
        if self.left() < 5:
            self.parts[name] = dict(status='skipped', error='time budget spent')
        else:
            try:
                result = fn(self)
                self.parts[name] = dict(status='ok', **result)
            except Exception as e:  # fail soft: record and go on
                self.parts[name] = dict(status='error', error=f'{type(e).__name__}: {e}',
                                        traceback=traceback.format_exc()[-3000:])
        self.parts[name]['seconds'] = round(time.time() - t0, 1)
        print(f'[gpu_check] {name}: {self.parts[name]["status"]} '
              f'({self.parts[name]["seconds"]:.0f} s)'
              + (f' {self.parts[name]["error"]}' if 'error' in self.parts[name] else ''),
              flush=True)
        self.write()

    def write(self) -> None:
        report = dict(dry_run=self.dry_run, started=time.strftime(
            '%Y-%m-%d %H:%M:%S', time.localtime(self.start)),
            seconds=round(time.time() - self.start, 1), budget_s=self.budget_s,
            parts=self.parts)
        _write(osp.join(self.out, 'gpu_check.json'), json.dumps(report, indent=1))
        _write(osp.join(self.out, 'gpu_check.md'), markdown(report))


def _write(path: str, text: str) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def _tail(path: str, n: int = 400) -> str:
    try:
        with open(path, errors='replace') as f:
            return ' '.join(f.read()[-n:].split())
    except OSError:
        return ''


def _python() -> List[str]:
    return [sys.executable]


# ---------------------------------------------------------------------- parts
def part_env(check: Check) -> dict:
    import torch
    out = dict(python=platform.python_version(), torch=torch.__version__,
               cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
               cpus=os.cpu_count())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / GiB, 1),
                   gpu_count=torch.cuda.device_count())
    try:
        out['commit'] = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO,
                                       capture_output=True, text=True,
                                       timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out['commit'] = ''
    for pkg in ('mmengine', 'mmseg', 'mmcv'):
        try:
            out[pkg] = __import__(pkg).__version__
        except Exception as e:  # a missing package is worth reporting, not a stop
            out[pkg] = f'missing ({type(e).__name__})'
    return out


_PYTEST_COUNTS = re.compile(r'(\d+) (passed|failed|skipped|deselected|error|errors|xfailed)')


def part_tests(check: Check) -> dict:
    if check.dry_run:  # collecting the whole suite takes minutes on a busy CPU
        targets = ['tests/test_models/test_uda/test_dacs.py']
    else:
        targets = ['tests']
    cmd = _python() + ['-m', 'pytest', '-q', '-rfEs', '-p', 'no:cacheprovider',
                       '-k', 'cuda'] + targets
    results = {}
    start = time.time()
    for name, args in (('cuda', cmd), ('cpu_pinned', _python() + [
            '-m', 'pytest', '-q', '-rfEs', '-p', 'no:cacheprovider',
            'tests/test_utils/test_launch.py'])):
        log = osp.join(check.logs, f'tests_{name}.log')
        # the CUDA tests may take 2/3 of the part's time, the pinned ones the rest
        limit = (check.limits['tests'] * 2 / 3 if name == 'cuda' else
                 check.limits['tests'] - (time.time() - start))
        try:
            check.run(args, f'tests_{name}', limit)
            status = 'ok'
        except RuntimeError as e:
            status = str(e)
        with open(log, errors='replace') as f:
            text = f.read()
        counts = {k: int(n) for n, k in _PYTEST_COUNTS.findall(text.splitlines()[-1]
                                                               if text else '')}
        failed = re.findall(r'^(?:FAILED|ERROR) (\S+)', text, re.M)
        results[name] = dict(status=status, counts=counts, failed=failed)
    bad = {k: v for k, v in results.items() if v['status'] != 'ok'}
    if bad:
        raise RuntimeError('; '.join(f"{k}: {v['counts']} failed {v['failed']} "
                                     f"({v['status']})" for k, v in bad.items()))
    return results


def part_memory(check: Check) -> dict:
    """Measured (CUDA, or real CPU tensors in the dry run) next to the estimate
    started in the background at the beginning."""
    configs = DRY_MEMORY_CONFIGS if check.dry_run else MEMORY_CONFIGS
    measured_json = osp.join(check.out, 'memory_measured.json')
    cmd = _python() + [osp.join(HERE, 'gpu_memory.py'), *configs, '--amp', 'on',
                       '--json', measured_json]
    if check.dry_run:
        cmd += ['--device', 'cpu'] + DRY_SIZE
    else:
        # three at a time: the six together with their allocator caches could fill the card
        cmd += ['--device', 'cuda', '--warmup', '2', '--jobs', '3']
    error = None
    try:
        check.run(cmd, 'memory_measured', check.limits['memory'] - 20)
    except RuntimeError as e:  # rows measured before a failure still count
        error = str(e)
    estimates = {}
    for i in range(len(configs)):
        name = f'memory_estimated_{i}'
        try:
            check.wait(name, 30 if not check.dry_run else check.limits['memory'])
        except (RuntimeError, KeyError) as e:
            error = (error + '; ' if error else '') + f'estimate: {e}'
        estimates.update(_rows(osp.join(check.out, f'{name}.json')))
    measured = _rows(measured_json)
    rows = []
    for key in dict.fromkeys(list(measured) + list(estimates)):
        m, e = measured.get(key, {}), estimates.get(key, {})
        row = dict(config=key[0], memory_saving=key[1], amp=True)
        if 'peak_bytes' in m:
            row.update(measured_gb=m['peak_bytes'] / GiB,
                       reserved_gb=m.get('reserved_bytes', 0) / GiB or None)
        elif 'error' in m:
            row['measured_error'] = m['error']
        if 'peak_bytes' in e:
            row['estimated_gb'] = e['peak_bytes'] / GiB
        if 'measured_gb' in row and 'estimated_gb' in row:
            row['error_pct'] = 100 * (row['estimated_gb'] / row['measured_gb'] - 1)
        rows.append(row)
    out = dict(rows=rows, measured_on='cpu tensors (dry run)' if check.dry_run
               else 'cuda')
    if error and not rows:
        raise RuntimeError(error)
    if error:
        out['error_note'] = error
    return out


def _rows(path: str) -> Dict[tuple, dict]:
    if not osp.isfile(path):
        return {}
    with open(path) as f:
        rows = json.load(f)['rows']
    return {(r['config'], r.get('memory_saving')): r for r in rows}


def _overhead(check: Check, name: str, speeds: List[str], rounds: int,
              extra: Optional[List[str]] = None) -> dict:
    """Run dida_overhead.py (DAFormer and DAFormer + DiDA, one process each, the speed
    settings ``speeds`` interleaved over ``rounds``) and condense its summary; rows of
    the processes that finished are kept when the part's time runs out."""
    out_json = osp.join(check.out, f'{name}.json')
    cmd = _python() + [osp.join(HERE, 'dida_overhead.py'), '--only', 'time',
                       '--repeats', '1', '--speed-rounds', str(rounds),
                       '--variants', 'daformer', 'dida', '--speed', *speeds,
                       '--out', out_json] + (extra or [])
    if check.dry_run:  # (CPU autocast is bf16 and slow: fp32)
        cmd += ['--model', 'tiny', '--size', '64', '128', '--batch', '1', '--steps', '1',
                '--warmup', '1', '--device', 'cpu']
    else:
        cmd += ['--model', 'daformer', '--size', '512', '512', '--batch', '2',
                '--steps', '4', '--warmup', '2', '--device', 'cuda', '--amp']
    error = None
    try:
        check.run(cmd, name, check.limits[name])
    except RuntimeError as e:  # the processes that finished wrote their rows
        error = str(e)
    if not osp.isfile(out_json):
        raise RuntimeError(error or f'{name}: no JSON written')
    with open(out_json) as f:
        result = json.load(f)
    rows = {}
    for row, s in result['summary'].items():
        rows[row] = dict(
            variant=s['variant'], speed=s['speed'], step_s_median=s['step_s_median'],
            step_s_best=s['step_s'], rounds=s['rounds'],
            time_ratio_median=s['time_ratio_median'],
            speed_ratio_median=s['speed_ratio_median'], flop_ratio=s['flop_ratio'],
            gflop=s['flops'] / 1e9, tflops=s['tflops_median'],
            peak_fraction=s.get('peak_fraction_median'))
        if 'cpu_s' in s and check.dry_run:  # what load on the CPU cannot inflate
            rows[row].update(cpu_s=s['cpu_s'],
                             peak_fraction_cpu=s.get('peak_fraction_cpu'))
    out = dict(model='tiny 64x128 x 1, fp32 (dry run)' if check.dry_run
               else 'MiT-B5 512x512 x 2, AMP (fp16)', peak=result.get('peak'),
               variants=rows)
    if error:
        out['error_note'] = error
    return out


def part_step_times(check: Check) -> dict:
    out = _overhead(check, 'step_times', STEP_SPEEDS, 2 if check.dry_run else 3)
    rows = out['variants']
    fp32, amp = rows.get(f'dida+{FP32_BEFORE}'), rows.get('dida')
    if fp32 and amp:  # issue 18: AMP step >= 3x faster than the fp32 step before
        out['dida_amp_speedup_over_fp32'] = fp32['step_s_median'] / amp['step_s_median']
        best = min((r for r in rows.values() if r['variant'] == 'dida'
                    and 'fp32' not in r['speed']), key=lambda r: r['step_s_median'])
        out['dida_best_amp'] = dict(speed=best['speed'], speedup_over_fp32=(
            fp32['step_s_median'] / best['step_s_median']))
    return out


def part_compile_times(check: Check) -> dict:
    peak = check.parts.get('step_times', {}).get('peak') or {}
    extra = ['--peak-tflops', str(peak['tflops'])] if peak.get('tflops') else []
    if check.dry_run:  # the dynamo path without inductor's C++ build on a busy CPU
        extra += ['--compile-backend', 'eager']
    return _overhead(check, 'compile_times', COMPILE_SPEEDS, 2, extra)


_ITER_TIME = re.compile(r'Iter\(train\) \[\s*(\d+)/\s*\d+\].*?\stime: ([\d.]+)')


def part_toy_job(check: Check) -> dict:
    toy = osp.join(check.out, 'toy')
    data = osp.join(toy, 'data', 'procedural')
    if not osp.isdir(data):
        gen = _python() + [osp.join(REPO, 'tools', 'generate_benchmark.py'), data]
        gen += (['--size', '128', '64', '--num-train', '4', '--num-val', '2']
                if check.dry_run else ['--num-train', '64', '--num-val', '8'])
        check.run(gen, 'toy_generate', check.limits['toy_job'] / 3)
    iters = 4 if check.dry_run else 60
    opts = [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            'default_hooks.logger.interval=' + ('1' if check.dry_run else '10'),
            f'default_hooks.checkpoint.interval={iters}',
            'default_hooks.visualization.draw=False']
    if check.dry_run:
        opts += ['model.data_preprocessor.size=(64,128)'] + [
            f'{dl}.{k}' for dl in ('train_dataloader', 'val_dataloader',
                                   'test_dataloader', 'val_cfg.extra.source.dataloader',
                                   'test_cfg.extra.source.dataloader')
            for k in ('num_workers=0', 'persistent_workers=False')]
    out = {}
    for name, amp in (('fp32', False), ('amp', True)):
        if amp and check.dry_run:
            continue  # CPU: --amp is refused (fp16 needs CUDA)
        work = osp.join(toy, f'work_{name}')
        cmd = _python() + [osp.join(REPO, 'tools', 'train.py'), osp.join(REPO, TOY_CONFIG),
                           '--work-dir', work] + (['--amp'] if amp else [])
        cmd += ['--cfg-options'] + opts
        res_log = osp.join(check.logs, f'toy_{name}.log')
        check.run(cmd, f'toy_{name}', check.limits['toy_job'] / 2, cwd=toy)
        with open(res_log, errors='replace') as f:
            times = [(int(i), float(t)) for i, t in _ITER_TIME.findall(f.read())]
        if not times:
            raise RuntimeError(f'toy_{name}: no "Iter(train) ... time:" line in its log')
        later = [t for i, t in times if i > iters // 3] or [t for _, t in times]
        out[name] = dict(s_per_iter=statistics.median(later), iterations=iters,
                         logged=len(times))
    return out


DRY_SIZE = ['--size', '64', '128', '--batch', '1']


def part_auto_fit(check: Check) -> dict:
    """Which mode ``memory_saving='auto'`` settles at in AUTO_FIT_GB of the card (dry
    run: the toy DiDA config on the CPU, which never runs out: its first mode)."""
    out_json = osp.join(check.out, 'auto_fit.json')
    cmd = _python() + [osp.join(HERE, 'gpu_memory.py'), '--memory-saving', 'auto',
                       '--json', out_json]
    if check.dry_run:
        cmd += [osp.join(REPO, TOY_CONFIG), '--device', 'cpu'] + DRY_SIZE
    else:
        cmd += [osp.join(REPO, AUTO_FIT_CONFIG), '--device', 'cuda', '--amp', 'both',
                '--warmup', '2', '--memory-limit-gb', str(AUTO_FIT_GB)]
    error = None
    try:
        check.run(cmd, 'auto_fit', check.limits['auto_fit'])
    except RuntimeError as e:  # a row that ran out in every mode is a finding too
        error = str(e)
    if not osp.isfile(out_json):
        raise RuntimeError(error or 'auto_fit: no rows written')
    with open(out_json) as f:
        rows = json.load(f)['rows']
    out = dict(limit_gb=None if check.dry_run else AUTO_FIT_GB, rows=[
        dict(config=r['config'], amp=r['amp'], used=r.get('memory_saving_used'),
             measured_gb=r['peak_bytes'] / GiB if 'peak_bytes' in r else None,
             error=r.get('error')) for r in rows])
    if error:
        out['error_note'] = error
    return out


# --------------------------------------------------------------------- report
def _num(value, fmt: str) -> str:
    return '-' if value is None else format(value, fmt)


def _step_table(st: dict, title: str) -> List[str]:
    """Markdown of a step_times-like part: one row per (variant, speed setting)."""
    if not st.get('variants'):
        return []
    peak = st.get('peak') or {}
    lines = ['', f"## {title} ({st['model']}; median of interleaved rounds)", '']
    if peak.get('source') == 'measured':
        lines += [f"Peak {peak['tflops']:.4g} TFLOP/s (measured: {peak.get('dtype')} "
                  f"{peak.get('n')}^2 matrix product on {peak.get('device')}).", '']
    elif peak.get('tflops'):
        lines += [f"Peak {peak['tflops']:.4g} TFLOP/s (given).", '']
    lines += ['| row | step s (median) | step s (best round) | rounds | DiDA / DAFormer | '
              'x default | TFLOP/s | peak % | FLOP x |', '|---|---|---|---|---|---|---|---|---|']
    for v, s in st['variants'].items():
        frac = s.get('peak_fraction')
        lines.append(f"| {v} | {s['step_s_median']:.3f} | {s['step_s_best']:.3f} | "
                     f"{s['rounds']} | {_num(s['time_ratio_median'], '.2f')} | "
                     f"{_num(s['speed_ratio_median'], '.3f')} | {s['tflops']:.3g} | "
                     f"{_num(None if frac is None else 100 * frac, '.1f')} | "
                     f"{_num(s['flop_ratio'], '.2f')} |")
    if 'dida_amp_speedup_over_fp32' in st:
        best = st['dida_best_amp']
        lines += ['', f"DiDA AMP step (default) {st['dida_amp_speedup_over_fp32']:.2f}x "
                  f"faster than its fp32 step with foreach AdamW; fastest AMP setting "
                  f"{best['speed']}: {best['speedup_over_fp32']:.2f}x (goal >= 3x)."]
    return lines


def markdown(report: dict) -> str:
    parts = report['parts']
    lines = [f"# GPU check{' (dry run: CPU, tiny sizes)' if report['dry_run'] else ''}",
             '', f"Started {report['started']}, {report['seconds']:.0f} s of "
             f"{report['budget_s']:.0f} s.", '',
             '| part | status | seconds | note |', '|---|---|---|---|']
    for name, p in parts.items():
        note = p.get('error', '') or p.get('error_note', '')
        lines.append(f"| {name} | {p['status']} | {p.get('seconds', 0):.0f} | "
                     f"{' '.join(str(note).split())[:200]} |")
    env = parts.get('env', {})
    if env.get('status') == 'ok':
        lines += ['', f"torch {env.get('torch')} (CUDA {env.get('cuda')}), "
                  f"{env.get('gpu', 'no GPU')} "
                  f"{str(env.get('gpu_memory_gb', '')) + ' GB' if 'gpu' in env else ''}, "
                  f"{env.get('cpus')} CPUs, commit {env.get('commit')}."]
    tests = parts.get('tests', {})
    if tests.get('status') in ('ok', 'error'):
        lines += ['', '## Tests', '', '| selection | counts | failed |', '|---|---|---|']
        for name in ('cuda', 'cpu_pinned'):
            t = tests.get(name)
            if t:
                counts = ', '.join(f'{n} {k}' for k, n in t['counts'].items())
                lines.append(f"| {name} | {counts} | {' '.join(t['failed']) or '-'} |")
    mem = parts.get('memory', {})
    if mem.get('rows'):
        lines += ['', f"## Peak memory of one AMP training step (GB; measured on "
                  f"{mem.get('measured_on')})", '',
                  '| config | DiDA memory_saving | measured | reserved | estimated | '
                  'estimate error |', '|---|---|---|---|---|---|']
        for r in mem['rows']:
            def gb(k):
                return f'{r[k]:.2f}' if r.get(k) is not None else '-'
            err = f"{r['error_pct']:+.1f}%" if 'error_pct' in r else \
                r.get('measured_error', '-')[:80]
            lines.append(f"| {r['config']} | {r['memory_saving'] or '-'} | "
                         f"{gb('measured_gb')} | {gb('reserved_gb')} | "
                         f"{gb('estimated_gb')} | {err} |")
    for key, title in (('step_times', 'Step time'),
                       ('compile_times', 'Step time, torch.compile of the encoders')):
        lines += _step_table(parts.get(key, {}), title)
    fit = parts.get('auto_fit', {})
    if fit.get('rows'):
        limit = fit.get('limit_gb')
        lines += ['', f"## memory_saving='auto' in {limit} GB" if limit else
                  "## memory_saving='auto' (dry run: no limit)", '',
                  '| config | AMP | settles at | measured GB | error |', '|---|---|---|---|---|']
        for r in fit['rows']:
            gb = f"{r['measured_gb']:.2f}" if r.get('measured_gb') is not None else '-'
            lines.append(f"| {r['config']} | {r['amp']} | {r.get('used') or '-'} | {gb} | "
                         f"{(r.get('error') or '-')[:80]} |")
    toy = parts.get('toy_job', {})
    runs = {k: v for k, v in toy.items() if isinstance(v, dict) and 's_per_iter' in v}
    if runs:
        lines += ['', '## Toy main job (DAFormer + DiDA, procedural benchmark)', '',
                  '| precision | s / iteration | iterations |', '|---|---|---|']
        for k, v in runs.items():
            lines.append(f"| {k} | {v['s_per_iter']:.3f} | {v['iterations']} |")
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default=os.environ.get('OUT') or 'gpu_check')
    p.add_argument('--dry-run', action='store_true',
                   help='CPU, tiny sizes: check the script itself')
    p.add_argument('--budget-s', type=float, default=None,
                   help='seconds for all parts (default 540; dry run 3600)')
    p.add_argument('--parts', nargs='+', default=None, choices=PARTS)
    args = p.parse_args(argv)
    budget = args.budget_s or (3600.0 if args.dry_run else 540.0)
    check = Check(args.out, args.dry_run, budget)
    parts = args.parts or PARTS
    if 'memory' in parts:  # CPU work (one process per config) beside the GPU parts
        configs = DRY_MEMORY_CONFIGS if args.dry_run else MEMORY_CONFIGS
        for i, config in enumerate(configs):
            check.start_background(_python() + [
                osp.join(HERE, 'gpu_memory.py'), config, '--device', 'fake', '--amp',
                'on', '--json', osp.join(check.out, f'memory_estimated_{i}.json')] + (
                    DRY_SIZE if args.dry_run else []), f'memory_estimated_{i}')
    fns = dict(env=part_env, tests=part_tests, memory=part_memory,
               step_times=part_step_times, toy_job=part_toy_job, auto_fit=part_auto_fit,
               compile_times=part_compile_times)
    for name in parts:
        check.part(name, fns[name])
    for name, proc in check.background.items():  # a part that never collected it
        proc.kill()
    print(f"[gpu_check] wrote {osp.join(check.out, 'gpu_check.json')} and gpu_check.md")
    return 0 if all(p['status'] == 'ok' for p in check.parts.values()) else 1


if __name__ == '__main__':
    sys.exit(main())

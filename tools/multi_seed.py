"""Train one or several configs with several seeds, then report the spread.

    python tools/multi_seed.py CONFIG [CONFIG ...] --seeds 0 1 2 [--out-dir DIR]
        [--iters N] [--cfg-options k=v ...] [--slurm PARTITION] [--report-only]

Each (config, seed) trains with ``tools/train.py`` (``randomness.seed=<seed>``) into
``<out-dir>/<config name>/seed<seed>``, one after the other on this machine, or with
``--slurm PARTITION`` as one Slurm job per seed through ``tools/slurm_train.sh``, all
submitted at once (its environment variables GPUS, GPUS_PER_NODE, CPUS_PER_TASK,
SRUN_ARGS, GRES, PYTHON apply to every job). A run whose final checkpoint
(``iter_<max_iters>.pth``) exists is reused; an interrupted one resumes.

The training output goes to ``<work dir>/train_stdout.log``; the console shows its
progress lines (iteration, ETA, losses; validation) prefixed with the run.

Then, in ``<out-dir>``:

* ``results.md`` -- per config: mIoU (and source/mIoU, aAcc, mAcc) as mean +- std
  over the seeds and mIoU per seed; per-class IoU tables (target and each further
  validation set) with mean +- std;
* ``results.csv`` -- every run's metrics and per-class IoU, and mean / std rows;
* ``curves_<config name>.png`` -- every loss term, the pseudo-label confidence
  (``pseudo_weight``) and the validation mIoU over the iterations, a line per seed.

The metrics are those of each run's last validation (the configs validate at the
final iteration). Per-class IoU is read from the logged ``IoU.<class>`` keys where the
metric logs them, else from the per-class table of the log text.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

from mmengine.config import Config, DictAction

from mmseg_dida.apis.benchmark import schedule_options
from mmseg_dida.apis.run_report.aggregate import csv_text, markdown_table
from mmseg_dida.apis.run_report.curves import plot_curves
from mmseg_dida.apis.run_report.logs import RunLogError, final_metrics, read_scalars
from mmseg_dida.utils.atomic_files import atomic_write_text

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: Lines of the training output shown on the console (the rest is in the log file).
PROGRESS_MARKS = ('Iter(train)', 'Iter(val)', 'Saving checkpoint', 'error:', 'Error')


class MultiSeedError(Exception):
    """A mistake in the arguments or a run that failed; printed as one line."""


class Run:
    """One (config, seed): where it trains and which checkpoint ends it."""

    def __init__(self, config: str, name: str, seed: int, out_dir: str,
                 max_iters: int, options: List[str]):
        self.config, self.name, self.seed = config, name, seed
        self.work_dir = osp.join(out_dir, name, f'seed{seed}')
        self.final_ckpt = osp.join(self.work_dir, f'iter_{max_iters}.pth')
        self.options = [f'randomness.seed={seed}'] + options
        self.log_path = osp.join(self.work_dir, 'train_stdout.log')

    @property
    def label(self) -> str:
        return f'{self.name} seed {self.seed}'

    @property
    def done(self) -> bool:
        return osp.isfile(self.final_ckpt)

    def train_args(self) -> List[str]:
        args = [self.config, '--work-dir', self.work_dir]
        if osp.isfile(osp.join(self.work_dir, 'last_checkpoint')):
            args.append('--resume')
        return args + ['--cfg-options'] + self.options


def plan(configs: List[str], seeds: List[int], out_dir: str, iters: Optional[int],
         cfg_options: Optional[dict], raw_options: List[str]) -> List[Run]:
    """The runs, config-major; checks every config before anything trains."""
    runs, names = [], {}
    for config in configs:
        if not osp.isfile(config):
            raise MultiSeedError(f"config file '{config}' does not exist")
        name = osp.splitext(osp.basename(config))[0]
        if name in names:
            raise MultiSeedError(f"configs '{names[name]}' and '{config}' have the "
                                 f"same name '{name}'; their work dirs would clash")
        names[name] = config
        cfg = Config.fromfile(config)
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        options = list(raw_options)
        if iters is not None:
            options += schedule_options(cfg, iters)
        max_iters = iters if iters is not None else cfg.train_cfg.get('max_iters')
        if max_iters is None:
            raise MultiSeedError(f"'{config}' has no train_cfg.max_iters (an "
                                 'iteration-based schedule is needed)')
        runs += [Run(config, name, s, out_dir, int(max_iters), options) for s in seeds]
    return runs


def _env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env['PYTHONPATH'] = os.pathsep.join(p for p in (REPO, env.get('PYTHONPATH')) if p)
    return env


def train_local(run: Run) -> None:
    """Train ``run`` in a fresh interpreter; the output goes to its log file and its
    progress lines to the console."""
    os.makedirs(run.work_dir, exist_ok=True)
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py')] + run.train_args()
    with open(run.log_path, 'a') as log:
        proc = subprocess.Popen(cmd, cwd=os.getcwd(), env=_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in proc.stdout:
            log.write(line)
            if any(m in line for m in PROGRESS_MARKS):
                print(f'[{run.label}] {line.rstrip()}', flush=True)
        rc = proc.wait()
    if rc or not run.done:
        raise MultiSeedError(f'{run.label}: training failed (exit {rc}); see '
                             f'{run.log_path}')


def train_slurm(runs: List[Run], partition: str, poll_s: float = 30.0) -> List[str]:
    """One Slurm job per run through tools/slurm_train.sh, all submitted at once;
    waits for all, printing a status line every ``poll_s`` seconds. Returns the
    failures (one line each)."""
    script = osp.join(REPO, 'tools', 'slurm_train.sh')
    procs: Dict[str, Tuple[Run, subprocess.Popen]] = {}
    logs = []
    for run in runs:
        os.makedirs(run.work_dir, exist_ok=True)
        log = open(osp.join(run.work_dir, 'slurm_stdout.log'), 'a')
        logs.append(log)
        job = f'{run.name}_s{run.seed}'
        cmd = ['bash', script, partition, job] + run.train_args()
        procs[job] = (run, subprocess.Popen(cmd, env=_env(), stdout=log,
                                            stderr=subprocess.STDOUT))
        print(f'[slurm] submitted {job} -> {run.work_dir}', flush=True)
    start = time.time()
    failures = []
    try:
        while procs:
            for job, (run, proc) in list(procs.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del procs[job]
                if rc or not run.done:
                    failures.append(f'{run.label}: Slurm job {job} failed (exit {rc}); '
                                    f"see {osp.join(run.work_dir, 'slurm_stdout.log')}")
                    print(f'[slurm] {failures[-1]}', flush=True)
                else:
                    print(f'[slurm] {job} finished', flush=True)
            if procs:
                print(f'[slurm] {len(procs)} of {len(runs)} jobs running, '
                      f'{time.time() - start:.0f} s elapsed', flush=True)
                _wait_any([p for _, p in procs.values()], poll_s)
    finally:
        for log in logs:
            log.close()
    return failures


def _wait_any(procs: List[subprocess.Popen], timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end and all(p.poll() is None for p in procs):
        time.sleep(min(0.2, timeout))


def report(runs: List[Run], out_dir: str) -> Tuple[str, List[str]]:
    """Write results.md, results.csv and the curves of the finished runs; return the
    Markdown and the runs left out (one line each)."""
    metrics: Dict[str, Dict[int, Dict[str, float]]] = {}
    series: Dict[str, Dict[int, tuple]] = {}
    missing = []
    for run in runs:
        if not run.done:
            missing.append(f'{run.label}: not finished ({run.final_ckpt} missing)')
            continue
        try:
            metrics.setdefault(run.name, {})[run.seed] = final_metrics(run.work_dir)
            series.setdefault(run.name, {})[run.seed] = read_scalars(run.work_dir)
        except (RunLogError, OSError) as e:
            missing.append(f'{run.label}: {e}')
    if not metrics:
        raise MultiSeedError('no finished run to report: ' + '; '.join(missing))
    os.makedirs(out_dir, exist_ok=True)
    md = markdown_table(metrics)
    atomic_write_text(osp.join(out_dir, 'results.md'), md)
    atomic_write_text(osp.join(out_dir, 'results.csv'), csv_text(metrics))
    for name, seeds in series.items():
        plot_curves(seeds, osp.join(out_dir, f'curves_{name}.png'),
                    title=f'{name}, seeds {sorted(seeds)}')
    return md, missing


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Train configs with several seeds; tables and curves of the spread.')
    p.add_argument('configs', nargs='+', help='config file(s)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--out-dir', default=osp.join('work_dirs', 'multi_seed'))
    p.add_argument('--iters', type=int, default=None,
                   help="train this many iterations instead of the configs' schedule "
                        '(the LR decay ends there)')
    p.add_argument('--cfg-options', nargs='+', default=[],
                   help='passed to every training (key=value)')
    p.add_argument('--slurm', metavar='PARTITION', default=None,
                   help='one Slurm job per seed through tools/slurm_train.sh')
    p.add_argument('--report-only', action='store_true',
                   help='train nothing; report the finished runs')
    return p.parse_args(argv)


def options_dict(options: List[str]) -> Optional[dict]:
    """``key=value`` strings as tools/train.py reads them (mmengine's DictAction)."""
    if not options:
        return None
    q = argparse.ArgumentParser()
    q.add_argument('--o', nargs='+', action=DictAction)
    return q.parse_args(['--o'] + list(options)).o


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if len(set(args.seeds)) != len(args.seeds):
            raise MultiSeedError(f'--seeds has duplicates: {args.seeds}')
        if args.iters is not None and args.iters < 1:
            raise MultiSeedError(f'--iters must be >= 1, got {args.iters}')
        runs = plan(args.configs, args.seeds, args.out_dir, args.iters,
                    options_dict(args.cfg_options), args.cfg_options)
        todo = [r for r in runs if not r.done]
        for r in runs:
            if r.done:
                print(f'[multi_seed] {r.label}: reused ({r.final_ckpt})', flush=True)
        failures = []
        if todo and not args.report_only:
            if args.slurm:
                failures = train_slurm(todo, args.slurm)
            else:
                for i, run in enumerate(todo, 1):
                    print(f'[multi_seed] run {i}/{len(todo)}: {run.label} -> '
                          f'{run.work_dir}', flush=True)
                    try:
                        train_local(run)
                    except MultiSeedError as e:
                        failures.append(str(e))
                        print(f'[multi_seed] {e}', flush=True)
        md, missing = report(runs, args.out_dir)
        print(md)
        print(f'[multi_seed] wrote {args.out_dir}/results.md, results.csv, curves_*.png')
        for line in missing:
            print(f'[multi_seed] left out: {line}', file=sys.stderr)
        return 1 if failures else 0
    except MultiSeedError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())

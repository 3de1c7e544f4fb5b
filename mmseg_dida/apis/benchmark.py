"""Running the procedural benchmark's methods side by side (tools/run_benchmark.py,
tools/benchmarks/accuracy.py): which configs, the data of a gap preset (generated if
missing) and the options that re-root the configs there, how a finished run is found and
reused, several trainings at once with a status line per run, and the per-class metrics
of a finished run."""
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from mmengine.config import Config

from mmseg_dida.datasets import procedural
from mmseg_dida.datasets.transforms.checks import dataset_nodes

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

#: how the benchmark's encoder starts: random init ('scratch', the configs named
#: ``*_mit_tiny_*``) or from the formula-pretrained weights with DAFormer's feature
#: distance and learning rates ('pretrained', ``*_mit_tiny_formula_*``;
#: configs/_base_/regimes/formula_pretrained.py)
REGIMES: Dict[str, str] = {'scratch': 'mit_tiny', 'pretrained': 'mit_tiny_formula'}
#: the main job's regime: the one that orders the known methods as the literature
#: does more often (docs/results.md, "Two regimes")
DEFAULT_REGIME = 'pretrained'

_CONFIGS = {  # method -> config, {} = the regime's model name; in table order
    'source-only': 'configs/benchmark/source_only_{}_procedural.py',
    'DAFormer': 'configs/benchmark/daformer_{}_procedural.py',
    'DAFormer+DiDA': 'configs/dida/daformer_{}_procedural_dida.py',
    'HRDA': 'configs/benchmark/hrda_{}_procedural.py',
    'HRDA+DiDA': 'configs/dida/hrda_{}_procedural_dida.py',
    'MIC(HRDA)': 'configs/benchmark/mic_hrda_{}_procedural.py',
    'MIC(HRDA)+DiDA': 'configs/dida/mic_hrda_{}_procedural_dida.py',
}
#: the main job's methods (tools/run_benchmark.py's default)
MAIN_METHODS = ('source-only', 'DAFormer', 'DAFormer+DiDA')


def methods_of(regime: str) -> Dict[str, str]:
    """Method name -> config path of the benchmark in ``regime``, in table order."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime '{regime}'; choose from {list(REGIMES)}")
    return {m: osp.join(REPO, c.format(REGIMES[regime])) for m, c in _CONFIGS.items()}


#: method name -> config of the default regime
METHODS: Dict[str, str] = methods_of(DEFAULT_REGIME)


def add_regime_argument(parser) -> None:
    """``--regime`` of the benchmark tools."""
    parser.add_argument('--regime', default=DEFAULT_REGIME, choices=list(REGIMES),
                        help='how the encoder starts: scratch (random init) or '
                             'pretrained (formula-pretrained weights, feature distance, '
                             "DAFormer's learning rates); default: %(default)s")


def run_tool(tool: str, args: List[str], log_path: Optional[str] = None) -> None:
    """Run ``tools/<tool>`` in a fresh interpreter in the current directory (config
    data roots are relative to it, as with mmseg's tools); its output goes to
    ``log_path`` (or through). Raises RuntimeError naming the log on failure."""
    cmd = [sys.executable, osp.join(REPO, 'tools', tool)] + list(args)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    if log_path is None:
        rc = subprocess.run(cmd, env=env).returncode
    else:
        os.makedirs(osp.dirname(log_path), exist_ok=True)
        with open(log_path, 'w') as log:
            rc = subprocess.run(cmd, env=env, stdout=log,
                                stderr=subprocess.STDOUT).returncode
    if rc:
        where = f'; see {log_path}' if log_path else ''
        raise RuntimeError(f"tools/{tool} {' '.join(args)} failed (exit {rc}){where}")


def final_checkpoint(config: str, work_dir: str, max_iters: Optional[int] = None) -> str:
    """Path of the checkpoint a finished run of ``config`` leaves in ``work_dir``."""
    if max_iters is None:
        max_iters = Config.fromfile(config).train_cfg.max_iters
    return osp.join(work_dir, f'iter_{max_iters}.pth')


def schedule_options(cfg: Config, max_iters: int) -> List[str]:
    """``--cfg-options`` that shorten or stretch ``cfg``'s schedule to ``max_iters``:
    the loop length, one validation at the end, and every LR scheduler that ended
    with the old schedule now ending with the new one (so that a longer run does not
    continue at the final learning rate, and a shorter one still decays to it).
    Schedulers that end earlier (warm-up) keep their length."""
    old = cfg.train_cfg.max_iters
    opts = [f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}']
    schedulers = cfg.get('param_scheduler', None) or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for i, sched in enumerate(schedulers):
        end = sched.get('end', None)
        if end is not None and end >= old:
            # mmengine reaches a scheduler's end value one iteration early, which
            # the configs compensate by end = max_iters + 1: keep that offset.
            opts.append(f'param_scheduler.{i}.end={max_iters + end - old}')
    return opts


def data_root_options(cfg: Config, data_root: str) -> List[str]:
    """``--cfg-options`` that move every dataset of ``cfg`` found under its top-level
    ``data_root`` (``data/procedural`` in the procedural configs) to the same
    sub-folder (source/, target/) of ``data_root``; none when that is the same
    folder. The configs derive their datasets' roots from that variable when they
    are read, so overriding ``data_root`` itself would change nothing."""
    old = cfg.get('data_root')
    if not isinstance(old, str):
        raise ValueError(f'{cfg.filename}: no top-level data_root to move to '
                         f'{data_root}')
    old, new = osp.normpath(old), osp.normpath(data_root)
    if old == new:
        return []
    opts = []
    for path, node in dataset_nodes(cfg):
        root = node.get('data_root')
        if isinstance(root, str) and (osp.normpath(root) == old
                                      or root.startswith(old + '/')):
            opts.append(f'{path}.data_root={new}{osp.normpath(root)[len(old):]}')
    return opts


def add_data_arguments(parser) -> None:
    """``--gap`` and ``--data-root`` of the benchmark tools; :func:`data_root_of`
    fills the default root after parsing."""
    parser.add_argument('--gap', default=procedural.DEFAULT_GAP,
                        choices=list(procedural.GAPS),
                        help='gap preset of the benchmark (default: full)')
    parser.add_argument('--data-root', default=None,
                        help='the benchmark folder, relative to the current directory '
                             '(default: data/procedural, or data/procedural_<gap>); '
                             'generated if missing')


def data_root_of(args):
    """``args`` with ``data_root`` set to the gap's default folder when not given."""
    if args.data_root is None:
        args.data_root = procedural.default_root(args.gap)
    return args


def benchmark_data(data_root: str, gap: str) -> dict:
    """The metadata of the procedural benchmark at ``data_root``, generated there for
    the gap preset ``gap`` (default size and counts) if missing. A benchmark of another
    preset there is an error, never overwritten."""
    meta = procedural.read_meta(data_root)
    if meta is None:
        print(f'[benchmark] generating {data_root} (gap {gap})', flush=True)
        meta = procedural.generate_benchmark(data_root, progress=True, gap=gap)
    elif meta['gap'] != gap:
        raise RuntimeError(
            f"{data_root} holds the '{meta['gap']}' benchmark, not '{gap}'; pass "
            f'--gap {meta["gap"]}, or another --data-root for {gap}')
    return meta


def train_or_reuse(config: str, work_dir: str, cfg_options: List[str] = (),
                   max_iters: Optional[int] = None, log_path: Optional[str] = None) -> str:
    """Train ``config`` into ``work_dir`` unless its final checkpoint exists; an
    interrupted run is resumed. Returns the final checkpoint."""
    job = TrainJob(osp.basename(work_dir), config, work_dir, list(cfg_options),
                   max_iters, log_path)
    return train_many([job], echo=lambda s: None)[job.name]


def last_val_metrics(work_dir: str) -> dict:
    """The last validation record (with 'mIoU') of the newest run under ``work_dir``."""
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')),
                       reverse=True):
        with open(path) as f:
            records = [r for r in map(json.loads, f) if 'mIoU' in r]
        if records:
            return records[-1]
    raise FileNotFoundError(f'no validation record (mIoU) under {work_dir}')


# ------------------------------------------------------------ parallel trainings
@dataclass
class TrainJob:
    """One training of ``config`` into ``work_dir`` (see :func:`train_or_reuse`)."""
    name: str
    config: str
    work_dir: str
    cfg_options: List[str] = field(default_factory=list)
    max_iters: Optional[int] = None
    log: Optional[str] = None  # default <work_dir>/train_stdout.log

    @property
    def checkpoint(self) -> str:
        return final_checkpoint(self.config, self.work_dir, self.max_iters)

    @property
    def log_path(self) -> str:
        return self.log or osp.join(self.work_dir, 'train_stdout.log')


_ITER_LINE = re.compile(r'Iter\(train\) \[\s*(\d+)/(\d+)\].*?eta: (\S+)')
_LOSS = re.compile(r'(?:^|\s)([\w.]*loss[\w.]*|pseudo_weight): (-?[\d.]+(?:e-?\d+)?)')


def progress_line(log_path: str) -> Optional[str]:
    """``iter i/N  eta h:mm:ss  loss x  q^T y  (DiDA's losses)`` from the last
    training line of an mmengine log (None before the first)."""
    try:
        with open(log_path, errors='replace') as f:
            lines = [ln for ln in f.read().splitlines()[-200:] if 'Iter(train)' in ln]
    except OSError:
        return None
    if not lines:
        return None
    m = _ITER_LINE.search(lines[-1])
    if not m:
        return None
    losses = dict(_LOSS.findall(lines[-1]))
    text = f'iter {m.group(1)}/{m.group(2)}  eta {m.group(3)}'
    if 'loss' in losses:
        text += f"  loss {float(losses.pop('loss')):.3f}"
    if 'pseudo_weight' in losses:
        text += f"  q^T {float(losses.pop('pseudo_weight')):.2f}"
    parts = [f'{k.split(".")[-1] if k.startswith(("src.", "mix.")) else k}'
             f'={float(v):.3f}' for k, v in losses.items()
             if 'dic' in k or 'recon' in k]
    return text + ('  (' + ' '.join(parts) + ')' if parts else '')


def train_many(jobs: Sequence[TrainJob], parallel: int = 1,
               status_every: float = 60.0,
               echo: Callable[[str], None] = lambda s: print(s, flush=True)
               ) -> Dict[str, str]:
    """Train ``jobs`` (finished ones are reused, interrupted ones resume), up to
    ``parallel`` at a time, each with ``cpu_count // parallel`` threads; every
    ``status_every`` seconds one line per running job (iteration, ETA, losses) goes
    to ``echo``. Returns name -> final checkpoint. Raises RuntimeError naming the
    log of the first failed job (after the others finished)."""
    threads = str(max(1, (os.cpu_count() or 1) // max(1, parallel)))
    pending = [j for j in jobs if not osp.isfile(j.checkpoint)]
    for j in jobs:
        if j not in pending:
            echo(f'[{j.name}] reusing {j.checkpoint}')
    running: Dict[str, tuple] = {}
    failed = []
    last_status = time.time()
    while pending or running:
        while pending and len(running) < max(1, parallel):
            job = pending.pop(0)
            args = [job.config, '--work-dir', job.work_dir]
            if osp.isfile(osp.join(job.work_dir, 'last_checkpoint')):
                args.append('--resume')
            opts = list(job.cfg_options)
            if job.max_iters is not None:
                opts += schedule_options(Config.fromfile(job.config), job.max_iters)
            if opts:
                args += ['--cfg-options'] + opts
            os.makedirs(job.work_dir, exist_ok=True)
            log = open(job.log_path, 'a')
            env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS=threads)
            proc = subprocess.Popen(
                [sys.executable, osp.join(REPO, 'tools', 'train.py')] + args,
                env=env, stdout=log, stderr=subprocess.STDOUT)
            running[job.name] = (job, proc, log, time.time())
            echo(f'[{job.name}] training {job.config} -> {job.work_dir} '
                 f'(log: {job.log_path})')
        time.sleep(min(2.0, status_every))
        for name, (job, proc, log, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            minutes = (time.time() - t0) / 60
            if proc.returncode or not osp.isfile(job.checkpoint):
                failed.append(job)
                echo(f'[{name}] FAILED (exit {proc.returncode}) after {minutes:.1f} '
                     f'min; see {job.log_path}')
            else:
                echo(f'[{name}] finished in {minutes:.1f} min')
        if running and time.time() - last_status >= status_every:
            last_status = time.time()
            for name, (job, *_rest) in running.items():
                echo(f'[{name}] {progress_line(job.log_path) or "starting"}')
    if failed:
        raise RuntimeError(f'training {failed[0].name} failed; see '
                           f'{failed[0].log_path}')
    return {j.name: j.checkpoint for j in jobs}


# ------------------------------------------------------------ metrics of a run
def test_metrics(config: str, checkpoint: str, work_dir: str,
                 cfg_options: Sequence[str] = ()) -> dict:
    """The metrics of ``tools/test.py config checkpoint`` (run into
    ``<work_dir>/test`` unless its ``test_metrics.json`` is newer than the
    checkpoint)."""
    out_dir = osp.join(work_dir, 'test')
    path = osp.join(out_dir, 'test_metrics.json')
    if not (osp.isfile(path) and osp.getmtime(path) >= osp.getmtime(checkpoint)):
        args = [config, checkpoint, '--work-dir', out_dir]
        if cfg_options:
            args += ['--cfg-options'] + list(cfg_options)
        run_tool('test.py', args, log_path=osp.join(work_dir, 'test_stdout.log'))
    with open(path) as f:
        return json.load(f)


def per_class(metrics: dict, prefix: str = '') -> Dict[str, float]:
    """``IoU.<class>`` entries of ``metrics`` (``prefix`` e.g. 'source/'), by class."""
    head = f'{prefix}IoU.'
    return {k[len(head):]: float(v) for k, v in metrics.items()
            if k.startswith(head)}

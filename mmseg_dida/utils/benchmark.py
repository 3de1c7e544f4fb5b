"""Running the procedural benchmark's methods side by side (tools/run_benchmark.py,
tools/benchmarks/accuracy.py): which configs, how a finished run is found and reused."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional

from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

#: method name -> config (relative to the repository root), in table order
METHODS: Dict[str, str] = {
    'source-only': 'configs/benchmark/source_only_mit_tiny_procedural.py',
    'DAFormer': 'configs/benchmark/daformer_mit_tiny_procedural.py',
    'DAFormer+DiDA': 'configs/dida/daformer_mit_tiny_procedural_dida.py',
}


def run_tool(tool: str, args: List[str], log_path: Optional[str] = None) -> None:
    """Run ``tools/<tool>`` in a fresh interpreter from the repository root; its output
    goes to ``log_path`` (or through). Raises RuntimeError naming the log on failure."""
    cmd = [sys.executable, osp.join(REPO, 'tools', tool)] + list(args)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    if log_path is None:
        rc = subprocess.run(cmd, cwd=REPO, env=env).returncode
    else:
        os.makedirs(osp.dirname(log_path), exist_ok=True)
        with open(log_path, 'w') as log:
            rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT).returncode
    if rc:
        where = f'; see {log_path}' if log_path else ''
        raise RuntimeError(f"tools/{tool} {' '.join(args)} failed (exit {rc}){where}")


def final_checkpoint(config: str, work_dir: str, max_iters: Optional[int] = None) -> str:
    """Path of the checkpoint a finished run of ``config`` leaves in ``work_dir``."""
    if max_iters is None:
        max_iters = Config.fromfile(osp.join(REPO, config)).train_cfg.max_iters
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


def train_or_reuse(config: str, work_dir: str, cfg_options: List[str] = (),
                   max_iters: Optional[int] = None, log_path: Optional[str] = None) -> str:
    """Train ``config`` into ``work_dir`` unless its final checkpoint exists; an
    interrupted run is resumed. Returns the final checkpoint."""
    ckpt = final_checkpoint(config, work_dir, max_iters)
    if osp.isfile(ckpt):
        return ckpt
    opts = list(cfg_options)
    if max_iters is not None:
        opts += schedule_options(Config.fromfile(osp.join(REPO, config)), max_iters)
    args = [config, '--work-dir', work_dir]
    if osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        args.append('--resume')
    if opts:
        args += ['--cfg-options'] + opts
    run_tool('train.py', args, log_path)
    if not osp.isfile(ckpt):
        raise RuntimeError(f'training finished without writing {ckpt}')
    return ckpt


def last_val_metrics(work_dir: str) -> dict:
    """The last validation record (with 'mIoU') of the newest run under ``work_dir``."""
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')),
                       reverse=True):
        with open(path) as f:
            records = [r for r in map(json.loads, f) if 'mIoU' in r]
        if records:
            return records[-1]
    raise FileNotFoundError(f'no validation record (mIoU) under {work_dir}')

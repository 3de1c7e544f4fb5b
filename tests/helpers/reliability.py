"""Shared by the reliability tests: fast toy overrides, tool runs, checkpoint diffs."""
import os
import os.path as osp
import socket
import subprocess
import sys
from typing import Dict, List

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN = osp.join(REPO, 'tools/train.py')
CONFIGS = {
    'daformer': osp.join(REPO, 'configs/benchmark/daformer_mit_tiny_procedural.py'),
    'dida': osp.join(REPO, 'configs/dida/daformer_mit_tiny_procedural_dida.py'),
    'source_only': osp.join(REPO, 'configs/benchmark/source_only_mit_tiny_procedural.py'),
}
_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader',
            'val_cfg.extra.source.dataloader', 'test_cfg.extra.source.dataloader')
# The tiny benchmark (128x64 images), main-process data loading, quiet.
FAST = ['model.data_preprocessor.size=(64,128)', 'default_hooks.logger.interval=1',
        'default_hooks.visualization.draw=False'] + [
            f'{dl}.{k}' for dl in _LOADERS
            for k in ('num_workers=0', 'persistent_workers=False')]


def schedule(max_iters: int, ckpt_interval: int = 1, keep: int = -1,
             val_interval: int = 1000) -> List[str]:
    return [f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={val_interval}',
            f'default_hooks.checkpoint.interval={ckpt_interval}',
            f'default_hooks.checkpoint.max_keep_ckpts={keep}']


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def train_command(config: str, work_dir, world: int, args: List[str]) -> List[str]:
    if world == 1:
        return [sys.executable, TRAIN, config, '--work-dir', str(work_dir)] + args
    return ['bash', osp.join(REPO, 'tools/dist_train.sh'), config, str(world),
            '--work-dir', str(work_dir)] + args


def tool_env() -> Dict[str, str]:
    """The tools' environment: one thread, a free port, and no GPU (gloo processes and
    bitwise comparisons of CPU runs also where a GPU is visible)."""
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1',
                CUDA_VISIBLE_DEVICES='',
                PYTHON=sys.executable, PORT=str(free_port()),
                PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))


def run_train(config, work_dir, cwd, args, world=1, timeout=600):
    res = subprocess.run(train_command(config, work_dir, world, args), cwd=cwd,
                         env=tool_env(), capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    return res.stdout + res.stderr


# The uninterrupted run the resume tests compare with: 4 iterations, a checkpoint
# after each, validations at 2 and 4 (they must not shift the training's random
# streams).
REF_ITERS = 4
REF_ARGS = ['--cfg-options'] + FAST + schedule(REF_ITERS, ckpt_interval=1, val_interval=2)
_uninterrupted = {}


def uninterrupted_run(method: str, world: int, bench):
    """Work dir of the uninterrupted run of ``method`` with ``world`` processes in the
    tiny benchmark ``bench``; trained once per test session."""
    key = (str(bench), method, world)
    if key not in _uninterrupted:
        work = bench / f'ref_{method}_{world}'
        log = run_train(CONFIGS[method], work, bench, REF_ARGS, world=world)
        assert all(osp.isfile(work / f'iter_{i}.pth') for i in range(1, REF_ITERS + 1)), log
        _uninterrupted[key] = work
    return _uninterrupted[key]


def flat_tensors(obj, prefix=''):
    """(name, tensor) of every tensor in nested dicts/lists/tuples; numpy arrays
    and Python numbers become tensors too (an int as its 32-bit chunks), so that
    random states are compared as well."""
    import numpy as np
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, np.ndarray):
        yield prefix, torch.from_numpy(obj.astype(np.float64))
    elif isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    elif isinstance(obj, float):
        yield prefix, torch.tensor(obj, dtype=torch.float64)
    elif isinstance(obj, int):  # exact for any size (PCG64 states are 128-bit)
        chunks, x = [1 if obj >= 0 else -1], abs(obj)
        while x:
            chunks.append(x & 0xFFFFFFFF)
            x >>= 32
        yield prefix, torch.tensor(chunks, dtype=torch.int64)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from flat_tensors(v, f'{prefix}.{k}' if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from flat_tensors(v, f'{prefix}[{i}]')


def group_of(section: str, name: str) -> str:
    if section != 'state_dict':
        return section
    top = name.split('.')[0]
    if top == 'student':
        kind = 'buffers' if any(s in name for s in ('running_', 'num_batches')) \
            else 'params'
        return f'student {kind}'
    return top


def checkpoint_diff(path_a, path_b) -> Dict[str, float]:
    """Max abs difference per tensor group of two checkpoints: student parameters,
    student buffers, teacher, plug-ins, optimiser, schedulers, random states; a
    group whose names differ is reported as inf."""
    a = torch.load(path_a, map_location='cpu', weights_only=False)
    b = torch.load(path_b, map_location='cpu', weights_only=False)
    out: Dict[str, float] = {}
    for section in ('state_dict', 'optimizer', 'param_schedulers', 'resume_state'):
        fa = dict(flat_tensors(a.get(section)))
        fb = dict(flat_tensors(b.get(section)))
        if fa.keys() != fb.keys():
            out[section] = float('inf')
            continue
        for name, ta in fa.items():
            tb = fb[name]
            group = group_of(section, name)
            if ta.shape != tb.shape:
                d = float('inf')
            elif ta.numel() == 0:
                d = 0.0
            else:
                d = (ta.double() - tb.double()).abs().max().item()
            out[group] = max(out.get(group, 0.0), d)
    return out

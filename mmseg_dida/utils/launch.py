"""Launch helpers shared by tools/train.py and tools/test.py.

* :func:`init_cpu_distributed` -- mmengine's ``init_dist`` calls
  ``torch.cuda.set_device``, so multi-process runs on machines without a GPU die before
  training. Here the process group is created with gloo from the launcher's environment
  (torchrun, slurm or MPI), and the runner then skips its own initialisation.
* :func:`check_data_roots` -- a config whose data root is missing fails with one line
  naming the path and the config key, before any worker or file is created.
"""
import os
import os.path as osp
import subprocess
from typing import Iterator, Tuple

import torch
import torch.distributed as dist


def _env_int(*names, default=None):
    for name in names:
        if name in os.environ:
            return int(os.environ[name])
    if default is None:
        raise KeyError(f'none of the environment variables {names} is set')
    return default


def init_cpu_distributed(launcher: str, port: int = 29500) -> Tuple[int, int]:
    """Create a gloo process group from a launcher's environment; return (rank, world)."""
    if launcher == 'pytorch':
        rank, world = _env_int('RANK'), _env_int('WORLD_SIZE')
        local_rank = _env_int('LOCAL_RANK', default=0)
    elif launcher == 'slurm':
        rank, world = _env_int('SLURM_PROCID'), _env_int('SLURM_NTASKS')
        local_rank = _env_int('SLURM_LOCALID', default=0)
        if 'MASTER_ADDR' not in os.environ:
            nodes = os.environ['SLURM_NODELIST']
            os.environ['MASTER_ADDR'] = subprocess.getoutput(
                f'scontrol show hostname {nodes} | head -n1')
        os.environ.setdefault('MASTER_PORT', str(port))
    elif launcher == 'mpi':
        rank = _env_int('OMPI_COMM_WORLD_RANK', 'PMI_RANK')
        world = _env_int('OMPI_COMM_WORLD_SIZE', 'PMI_SIZE')
        local_rank = _env_int('OMPI_COMM_WORLD_LOCAL_RANK', default=0)
        os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
        os.environ.setdefault('MASTER_PORT', str(port))
    else:
        raise ValueError(f"launcher must be 'pytorch', 'slurm' or 'mpi', got {launcher!r}")
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local_rank))
    if not dist.is_initialized():
        dist.init_process_group('gloo', rank=rank, world_size=world)
    return rank, world


def setup_launcher(cfg, launcher: str) -> None:
    """Set ``cfg.launcher``; on a machine without CUDA, initialise gloo ourselves and make
    the DDP wrapper run without device ids."""
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    init_cpu_distributed(launcher)
    cfg.env_cfg = cfg.get('env_cfg', {})
    cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def _dataset_roots(node, key) -> Iterator[Tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            path = f'{key}.{k}' if key else k
            if k == 'data_root' and isinstance(v, str):
                yield path, v
            else:
                yield from _dataset_roots(v, path)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _dataset_roots(v, f'{key}[{i}]')


def check_data_roots(cfg, keys=('train_dataloader', 'val_dataloader', 'test_dataloader',
                                'val_cfg', 'test_cfg')) -> None:
    """Raise FileNotFoundError naming the first missing ``data_root`` and its config key."""
    for top in keys:
        node = cfg.get(top)
        if node is None:
            continue
        for key, root in _dataset_roots(node, top):
            if not osp.isdir(root):
                raise FileNotFoundError(
                    f"data root '{root}' does not exist (config key {key}); "
                    'see data/README.md to prepare the dataset')

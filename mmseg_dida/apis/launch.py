"""Launch helpers shared by tools/train.py and tools/test.py.

* :func:`load_config` / :func:`build_runner` -- the config and runner set-up both tools
  share; every mistake in what the user gave (missing config, data root or checkpoint,
  wrong config key) is a :class:`UserError` that the tools print as one line.
* :func:`init_cpu_distributed` -- mmengine's ``init_dist`` calls
  ``torch.cuda.set_device``, so multi-process runs on machines without a GPU die before
  training. Here the process group is created with gloo from the launcher's environment
  (torchrun, slurm or MPI), and the runner then skips its own initialisation.
* :func:`check_data_roots` -- a config whose data root is missing fails with one line
  naming the path and the config key, before any worker or file is created.
* :func:`prepare_training` -- what ``tools/train.py`` adds to a config: the data
  checks of the first pass over each sample (``CheckFiles``, ``CheckSegLabel``) and
  the checkpoint ``--resume`` continues from (:mod:`mmseg_dida.engine.resume`). The
  hooks of a run (crash-safe checkpoints, the stop on a signal, ...) are declared in
  the config, by the schedules of ``configs/_base_/schedules/``.
"""
import atexit
import inspect
import os
import os.path as osp
import shutil
import subprocess
import sys
from typing import Iterator, Optional, Tuple

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..datasets.transforms.checks import insert_data_checks
from ..engine.mixed_precision import precision_of
from ..engine.resume import ResumeError, choose_resume_checkpoint
from ..engine.runner import UDARunner
from ..utils.console import log_file_of
from .config_errors import ConfigError, check_config, check_overrides, explain_build_error


class UserError(Exception):
    """A mistake in the config, paths or flags a user gave; reported as one line."""


def load_config(path: str, cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None) -> Config:
    """Read ``path``, apply ``--cfg-options`` and choose the work dir as mmseg does
    (``./work_dirs/<config name>`` unless given)."""
    if not osp.isfile(path):
        raise UserError(f"config file '{path}' does not exist")
    try:
        cfg = Config.fromfile(path)
    except FileNotFoundError as e:  # a _base_ entry, relative to the config's folder
        raise UserError(
            f'a file it inherits from does not exist: {e.filename} (_base_ paths are '
            'relative to the config\'s own folder: keep it in configs/<subdir>/ as '
            'tools/new_dataset.py does, or correct its _base_ entries)') from None
    if cfg_options:
        before = {k: cfg.get(k) for k in cfg_options if '.' not in k}
        merge_options(cfg, cfg_options)
        try:
            check_overrides(cfg, before, cfg_options)
        except ConfigError as e:
            raise UserError(str(e)) from None
    try:  # the parts the runner builds after creating the work dir
        check_config(cfg)
    except ConfigError as e:
        raise UserError(f'invalid config: {e}') from None
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def shorten_schedule(cfg: Config, iters: int) -> None:
    """``tools/train.py --short N``: the config's whole schedule compressed to
    ``iters`` iterations for a trial run: every LR scheduler's begin and end scaled by
    the same factor (a warm-up stays the same share of the run), one validation at
    the end, checkpoints and log lines at most ``iters`` apart."""
    if iters < 1:
        raise UserError(f'--short must be >= 1, got {iters}')
    train_cfg = cfg.get('train_cfg') or {}
    old = train_cfg.get('max_iters')
    if not old:
        raise UserError('--short needs an iteration-based schedule (train_cfg.max_iters)')
    train_cfg.update(max_iters=iters, val_interval=iters)
    schedulers = cfg.get('param_scheduler') or []
    for sched in [schedulers] if isinstance(schedulers, dict) else schedulers:
        begin, end = sched.get('begin', 0), sched.get('end')
        if isinstance(begin, int):
            sched['begin'] = begin = round(begin * iters / old)
        if isinstance(end, int):
            # a warm-up needs two steps to ramp: mmengine applies its start factor at
            # its first step and undoes it only at a later one inside [begin, end)
            sched['end'] = max(begin + 2, round(end * iters / old))
    hooks = cfg.get('default_hooks') or {}
    for name in ('checkpoint', 'logger'):
        if isinstance(hooks.get(name), dict) and 'interval' in hooks[name]:
            hooks[name]['interval'] = min(hooks[name]['interval'], iters)


def merge_options(cfg: Config, cfg_options: dict) -> None:
    """``cfg.merge_from_dict(cfg_options)``; an option that cannot be set (an index
    past the end of a list, a key under a value that is no dict) is a
    :class:`UserError` naming it and what is there instead."""
    for key, value in cfg_options.items():
        try:
            cfg.merge_from_dict({key: value})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise UserError(f'--cfg-options {key}={value!r}: cannot be set '
                            f'({_option_problem(cfg, key, e)})') from None


def _option_problem(cfg: Config, key: str, err: Exception) -> str:
    """What stands in the way of ``key``: the first part of its path that the config
    does not have."""
    node, done = cfg.to_dict(), []
    for part in key.split('.'):
        if isinstance(node, (list, tuple)):
            if not part.isdigit() or int(part) >= len(node):
                where = '.'.join(done)
                extra = (' (no plug-ins: use a config that adds them, e.g. configs/dida/)'
                         if done and done[-1] == 'plugins' and not node else '')
                return f'{where} is a list of {len(node)} entries{extra}'
            node = node[int(part)]
        elif isinstance(node, dict):
            if part not in node:
                break
            node = node[part]
        else:
            return f"{'.'.join(done)} is a {type(node).__name__}, not a dict"
        done.append(part)
    msg = err.args[0] if err.args else type(err).__name__
    return str(msg)


def build_runner(cfg: Config, launcher: str):
    """Check the data roots, set up the launcher and build the runner (which builds
    the model, so unknown config keys surface here); with ``--resume``, check that
    the checkpoint is one of this model (:func:`check_resume_model`); without it, that
    a ``load_from`` file is there and complete. A failure explained in one line leaves
    nothing behind in the work dir (with ``MMSEG_DIDA_DEBUG`` or an error it cannot
    explain, the traceback comes instead)."""
    try:
        check_data_roots(cfg)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    start = cfg.get('load_from') if not cfg.get('resume') else None
    if start and '://' not in str(start):  # a local file (mmengine also takes URLs)
        from ..utils.atomic_files import checkpoint_problem
        problem = checkpoint_problem(start)
        if problem is not None:
            raise UserError(f'load_from: checkpoint {start} cannot be used: {problem}')
    setup_launcher(cfg, launcher)
    work_dir = osp.abspath(cfg.work_dir)
    existed = osp.isdir(work_dir)
    entries = set(os.listdir(work_dir)) if existed else set()
    def discard():  # leave no work dir (or log folder, dumped config) behind
        if launcher_rank() != 0:
            return
        if not existed:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            for name in set(os.listdir(work_dir)) - entries:
                path = osp.join(work_dir, name)
                if osp.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)

    try:
        runner = (RUNNERS.build(cfg) if 'runner_type' in cfg
                  else UDARunner.from_cfg(cfg))
    except Exception as e:  # the model (or another part) could not be built
        line = explain_build_error(cfg, e)
        if line is None or os.environ.get('MMSEG_DIDA_DEBUG'):
            raise
        discard()
        raise UserError(f'invalid config: {line} (set MMSEG_DIDA_DEBUG=1 for the '
                        'traceback)') from None
    try:
        check_resume_model(runner)
    except UserError:
        discard()
        raise
    return runner


def launcher_rank() -> int:
    """This process's rank from the launcher's environment (0 if none)."""
    for name in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK', 'PMI_RANK'):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def prepare_training(cfg: Config, resume: bool) -> Optional[str]:
    """Insert the data checks of the first pass over each sample and, for ``resume``,
    choose the checkpoint (``cfg.load_from``;
    :func:`~mmseg_dida.engine.resume.choose_resume_checkpoint`). Returns a sentence
    saying what was chosen (None when not resuming); a work dir whose checkpoint files
    are all incomplete is a :class:`UserError`. The hooks a run gets are the config's
    (the schedules in ``configs/_base_/schedules/`` declare them)."""
    insert_data_checks(cfg)
    cfg.resume = resume
    if not resume:
        return None
    try:
        path, sentence = choose_resume_checkpoint(
            cfg.work_dir, cfg.get('load_from'), clean_temporaries=launcher_rank() == 0)
    except ResumeError as e:
        raise UserError(str(e)) from None
    if path is None:
        cfg.resume = False  # a first start (mmengine would look for one itself)
    else:
        cfg.load_from = path
    return sentence


def check_resume_model(runner) -> None:
    """With ``--resume``: the checkpoint must hold the tensors of this config's model
    (a DAFormer run's checkpoint cannot continue as a DAFormer + DiDA run). Otherwise
    a :class:`UserError` that says how to start from its weights instead."""
    from ..deploy.state_mapping import checkpoint_tensor_names
    path = runner.cfg.get('load_from') if runner.cfg.get('resume') else None
    if not path:
        return
    from ..deploy.state_mapping import CheckpointReadError
    model = getattr(runner.model, 'module', runner.model)
    own = set(model.state_dict())
    try:
        saved = checkpoint_tensor_names(path)
    except CheckpointReadError as e:
        raise UserError(f'--resume: {e}') from None
    missing, extra = sorted(own - saved), sorted(saved - own)
    if not (missing or extra):
        return
    raise UserError(
        f'--resume: {path} holds another model than this config ({len(missing)} of its '
        f'tensors missing, e.g. {missing[:2]}; {len(extra)} others, e.g. {extra[:2]}); '
        'to start this config from that run\'s weights, train a new run without '
        f'--resume and with --cfg-options load_from={path}')


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


def shutdown_distributed() -> None:
    """Wait for every process, then close the process group: a process that exits
    while another still talks to it (gloo) can make that one abort."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_process(status: int) -> None:
    """End a command's process with ``status``.

    One of several processes (``WORLD_SIZE`` > 1) runs the exit handlers (log files
    are flushed and closed), flushes its output and leaves without the interpreter's
    teardown: objects that torch's distributed backend still references from its own
    threads, released while the interpreter is torn down, can abort the process with
    SIGABRT ("terminate called without an active exception") after it has finished
    its work, and the launcher then reports a trained rank as failed. A single
    process exits normally."""
    if _env_int('WORLD_SIZE', default=1) <= 1:
        sys.exit(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing to keep
            pass
    os._exit(status)


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


def _img_suffix(node: dict) -> str:
    """The image suffix a dataset config selects (its own or its class default)."""
    if isinstance(node.get('img_suffix'), str):
        return node['img_suffix']
    from mmseg.registry import DATASETS
    cls = DATASETS.get(node['type']) if isinstance(node.get('type'), str) else None
    for klass in getattr(cls, '__mro__', ()):
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        param = inspect.signature(init).parameters.get('img_suffix')
        if param is not None and isinstance(param.default, str):
            return param.default
    return ''


def _has_file(folder: str, suffix: str) -> bool:
    for _, _, files in os.walk(folder, followlinks=True):
        if any(f.endswith(suffix) for f in files):
            return True
    return False


def _image_folders(node, key) -> Iterator[Tuple[str, dict]]:
    """(config key, dataset node) of the dataset configs with a data_root."""
    if isinstance(node, dict):
        if isinstance(node.get('data_root'), str) and 'type' in node:
            yield key, node
        for k, v in node.items():
            yield from _image_folders(v, f'{key}.{k}' if key else k)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _image_folders(v, f'{key}[{i}]')


def check_data_roots(cfg, keys=('train_dataloader', 'val_dataloader', 'test_dataloader',
                                'val_cfg', 'test_cfg')) -> None:
    """Raise FileNotFoundError naming the first missing ``data_root`` and its config
    key, or the first dataset whose image folder is missing or holds no image."""
    for top in keys:
        node = cfg.get(top)
        if node is None:
            continue
        for key, root in _dataset_roots(node, top):
            if not osp.isdir(root):
                raise FileNotFoundError(
                    f"data root '{root}' does not exist (config key {key}); "
                    'see data/README.md to prepare the dataset')
        for key, ds in _image_folders(node, top):
            prefix = (ds.get('data_prefix') or {}).get('img_path', '')
            folder = osp.join(ds['data_root'], prefix) if prefix else ds['data_root']
            if not osp.isdir(folder):
                raise FileNotFoundError(
                    f"image folder '{folder}' does not exist (config keys "
                    f'{key}.data_root and {key}.data_prefix.img_path)')
            suffix = _img_suffix(ds)
            if not _has_file(folder, suffix):
                raise FileNotFoundError(
                    f"data root '{ds['data_root']}' has no image ending in "
                    f"'{suffix}' under '{prefix}' (config key {key}.data_root); see "
                    'data/README.md to prepare the dataset')


def header(runner: Runner, config: str, resume_note: Optional[str]) -> str:
    """The few lines a run starts with: config, work dir and log file, device, seed,
    precision, DiDA's memory mode, and what it resumes from."""
    import torch
    cfg = runner.cfg
    world = runner.world_size
    device = (f'cuda ({torch.cuda.get_device_name(0)})' if torch.cuda.is_available()
              else 'cpu')
    precision = precision_of(cfg.get('optim_wrapper') or {})
    precision = precision if precision == 'fp32' else f'{precision} AMP'
    lines = [f'config: {config}',
             f'work dir: {osp.abspath(cfg.work_dir)}',
             f'log file: {log_file_of(runner)} (config, environment, hooks)',
             f'device: {device}, {world} process{"es" if world > 1 else ""}, '
             f'{precision}, seed {runner.seed}']
    model = cfg.get('model') or {}
    dida = [p for p in model.get('plugins', []) or [] if p.get('type') == 'DiDA']
    if dida:
        lines.append(f"DiDA: memory_saving {dida[0].get('memory_saving', 'none')}")
    if resume_note is not None:  # what --resume chose
        lines.append(f'--resume: {resume_note}')
    else:
        lines.append('resume: no (weights from load_from='
                     f'{cfg.load_from})' if cfg.get('load_from') else
                     'resume: no (a first start)')
    return '\n'.join(lines)

"""Train a segmentor or a UDA model (mmseg 1.x command line).

Exit status: 0 trained; 2 a mistake in the config, data or flags (one ``error:``
line); 3 the loss stayed non-finite; 75 stopped by SIGTERM, SIGINT or SIGUSR1 after a
checkpoint of the current iteration was written -- run it again with ``--resume``
(``GracefulStopHook``; with ``MMSEG_DIDA_STOP_FILE`` set, rank 0 also writes its stop
line to that file, which ``tools/slurm_train.sh`` reads to decide on a requeue).
"""
import argparse
import os
import sys

from mmengine.config import DictAction
from mmengine.logging import print_log

import mmseg_dida  # noqa: F401  (compat layer + registration before mmseg is used)
from mmseg_dida.apis.config_errors import explain_build_error
from mmseg_dida.apis.launch import (
    UserError,
    build_runner,
    check_data_roots,
    exit_process,
    header,
    launcher_rank,
    load_config,
    prepare_training,
    shorten_schedule,
    shutdown_distributed,
)
from mmseg_dida.datasets.transforms.checks import (
    DataError,
    data_error_line,
    dataset_nodes,
    scan_dataset,
)
from mmseg_dida.deploy.state_mapping import CheckpointMismatchError, CheckpointReadError
from mmseg_dida.engine.hooks import NonFiniteLossError
from mmseg_dida.engine.mixed_precision import (
    AMP_WRAPPERS,
    precision_problem,
    set_mixed_precision,
)
from mmseg_dida.engine.resume import STOP_EXIT_STATUS, TrainingStopped
from mmseg_dida.engine.speed_options import SpeedOptionError, apply_speed_options
from mmseg_dida.utils.atomic_files import atomic_write_text
from mmseg_dida.utils.console import silence_third_party_deprecations

# samples of each dataset checked before every training (all with --check-data)
SAMPLED_CHECK = 8
# --fused-optimizer -> speed.fused_optimizer (mmseg_dida/engine/speed_options.py)
FUSED_FLAG = {'auto': 'auto', 'on': True, 'off': False}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', action='store_true', default=False,
        help='resume from the latest checkpoint in the work_dir automatically')
    parser.add_argument(
        '--amp', nargs='?', const='fp16', choices=tuple(AMP_WRAPPERS), default=None,
        help='mixed-precision training: fp16 (a bare --amp; CUDA only: mmengine\'s '
        'AmpOptimWrapper, dynamic loss scaling) or bf16 (CPU or CUDA: '
        'BF16OptimWrapper, bfloat16 autocast, no loss scaling)')
    parser.add_argument(
        '--fused-optimizer', choices=tuple(FUSED_FLAG), default=None,
        help='speed.fused_optimizer: fused Adam/AdamW kernel: auto (the default: on '
        'where every parameter is on CUDA), on (any device, the CPU too) or off')
    parser.add_argument(
        '--channels-last', action='store_true',
        help='speed.channels_last=True: NHWC memory format for the model and its '
        'input images')
    parser.add_argument(
        '--compile', action='store_true',
        help='speed.compile=True: torch.compile (inductor) of the student\'s encoder '
        'and DiDA\'s g\' (other torch.compile arguments: speed.compile=dict(...) in '
        'the config)')
    parser.add_argument(
        '--cudnn-benchmark', action='store_true',
        help='env_cfg.cudnn_benchmark=True: cuDNN times its algorithms per shape')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value pairs such as '
        'xxx=yyy or model.backbone.depth=18')
    parser.add_argument(
        '--short', type=int, default=None, metavar='N',
        help='a trial run: the config\'s schedule compressed to N iterations (warm-up '
        'and decay scaled alike), one validation at the end')
    parser.add_argument(
        '--check-data', action='store_true',
        help='before training, check every sample of every dataset (files complete, '
        'labels of the image size and in the class table), with a progress bar '
        f'(without it, {SAMPLED_CHECK} samples of each are checked)')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch>=2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(bare_amp(sys.argv[1:] if argv is None else argv))
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def bare_amp(argv):
    """``--amp CONFIG.py`` (the bare flag before the config, as before --amp took a
    value) read as ``--amp=fp16 CONFIG.py``."""
    argv = list(argv)
    for i, arg in enumerate(argv[:-1]):
        if arg == '--amp' and argv[i + 1].endswith('.py'):
            argv[i] = '--amp=fp16'
    return argv


def set_speed_flags(cfg, args) -> None:
    """The speed flags into the config keys they stand for (``speed``,
    ``env_cfg.cudnn_benchmark``); a flag wins over the config."""
    speed = dict(cfg.get('speed', None) or {})
    if args.fused_optimizer is not None:
        speed['fused_optimizer'] = FUSED_FLAG[args.fused_optimizer]
    if args.channels_last:
        speed['channels_last'] = True
    if args.compile and not isinstance(speed.get('compile'), dict):
        speed['compile'] = True
    cfg.speed = speed
    if args.cudnn_benchmark:
        cfg.env_cfg = dict(cfg.get('env_cfg', None) or {}, cudnn_benchmark=True)


def build_cfg(args):
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    if args.short is not None:
        shorten_schedule(cfg, args.short)
    if args.amp:
        try:
            print_log(set_mixed_precision(cfg, args.amp), logger='current')
        except ValueError as e:
            raise UserError(str(e)) from None
    import torch
    cuda = torch.cuda.is_available()
    problem = precision_problem(cfg.optim_wrapper, cuda,
                                cuda and torch.cuda.is_bf16_supported())
    if problem:
        raise UserError(problem)
    set_speed_flags(cfg, args)
    try:
        apply_speed_options(cfg)
    except SpeedOptionError as e:
        raise UserError(str(e)) from None
    note = prepare_training(cfg, args.resume)
    return cfg, note


def check_training_data(cfg, check_all: bool):
    """The data roots, then (before the runner writes anything) every sample with
    --check-data, else a few of each dataset: a wrong label table shows in any of
    them."""
    try:
        check_data_roots(cfg)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    # every rank checks (a rank that skipped it would wait for the others in the
    # process group's start); rank 0 shows the progress
    try:
        scanned = set()
        for path, node in dataset_nodes(cfg):
            key = (str(node.get('type')), str(node.get('data_root')),
                   str(node.get('data_prefix')))
            if key not in scanned:  # val and test are often the same data
                scanned.add(key)
                scan_dataset(node, path, progress=launcher_rank() == 0,
                             sample=0 if check_all else SAMPLED_CHECK)
    except DataError as e:
        raise UserError(str(e)) from None


def main(argv=None):
    args = parse_args(argv)
    silence_third_party_deprecations()
    try:
        cfg, note = build_cfg(args)
        check_training_data(cfg, args.check_data)
        runner = build_runner(cfg, args.launcher)
    except UserError as e:
        print(f'error: {args.config}: {e}', file=sys.stderr)
        return 2
    if launcher_rank() == 0:
        print(header(runner, args.config, note), flush=True)
    try:
        runner.train()
    except DataError as e:  # raised in a dataloader worker: the original line
        print(f'error: {args.config}: {data_error_line(e)}', file=sys.stderr)
        return 2
    except TrainingStopped as e:  # every rank stops after the same iteration
        if launcher_rank() == 0:
            print(f'{args.config}: {e}', file=sys.stderr, flush=True)
            if os.environ.get('MMSEG_DIDA_STOP_FILE'):
                atomic_write_text(os.environ['MMSEG_DIDA_STOP_FILE'], f'{e}\n')
        shutdown_distributed()
        return STOP_EXIT_STATUS
    except NonFiniteLossError as e:
        print(f'error: {args.config}: {e}', file=sys.stderr)
        return 3
    except (CheckpointReadError, CheckpointMismatchError) as e:  # load_from's weights
        print(f'error: {args.config}: load_from: {e}', file=sys.stderr)
        return 2
    except Exception as e:  # a component built at the start of training
        line = explain_build_error(runner.cfg, e, root=None)
        if line is None or os.environ.get('MMSEG_DIDA_DEBUG'):
            raise
        print(f'error: {args.config}: invalid config: {line} (set MMSEG_DIDA_DEBUG=1 '
              'for the traceback)', file=sys.stderr)
        return 2
    shutdown_distributed()
    return 0


if __name__ == '__main__':
    exit_process(main())

"""Train a segmentor or a UDA model (mmseg 1.x command line).

Exit status: 0 trained; 2 a mistake in the config, data or flags (one ``error:``
line); 3 the loss stayed non-finite; 75 stopped by SIGTERM, SIGINT or SIGUSR1 after a
checkpoint of the current iteration was written -- run it again with ``--resume``
(``GracefulStopHook``; with ``MMSEG_DIDA_STOP_FILE`` set, rank 0 also writes its stop
line to that file, which ``tools/slurm_train.sh`` reads to decide on a requeue).
"""
import argparse
import logging
import os
import sys

from mmengine.config import DictAction
from mmengine.logging import print_log

import mmseg_dida  # noqa: F401  (compat layer + registration before mmseg is used)
from mmseg_dida.datasets.transforms.checks import (
    DataError,
    data_error_line,
    dataset_nodes,
    scan_dataset,
)
from mmseg_dida.engine.hooks import STOP_EXIT_STATUS, NonFiniteLossError, TrainingStopped
from mmseg_dida.utils.checkpoint import atomic_write_text
from mmseg_dida.utils.config_errors import explain_build_error
from mmseg_dida.utils.launch import (
    UserError,
    build_runner,
    exit_process,
    launcher_rank,
    load_config,
    prepare_training,
    shutdown_distributed,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', action='store_true', default=False,
        help='resume from the latest checkpoint in the work_dir automatically')
    parser.add_argument(
        '--amp', action='store_true', default=False,
        help='enable automatic-mixed-precision training (CUDA)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value pairs such as '
        'xxx=yyy or model.backbone.depth=18')
    parser.add_argument(
        '--check-data', action='store_true',
        help='before training, check every sample of every dataset (files complete, '
        'labels of the image size and in the class table), with a progress bar')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch>=2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_cfg(args):
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    if args.amp:
        import torch
        if not torch.cuda.is_available():
            raise UserError('--amp trains with fp16 on CUDA and no CUDA device is '
                            'available here; drop --amp on CPU')
        optim_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_type == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in your config.',
                      logger='current', level=logging.WARNING)
        else:
            if optim_type != 'OptimWrapper':
                raise UserError(f'--amp needs optim_wrapper.type OptimWrapper, got '
                                f'{optim_type}')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    note = prepare_training(cfg, args.resume)
    if args.check_data and launcher_rank() == 0:
        try:
            scanned = set()
            for path, node in dataset_nodes(cfg):
                key = (str(node.get('type')), str(node.get('data_root')),
                       str(node.get('data_prefix')))
                if key not in scanned:  # val and test are often the same data
                    scanned.add(key)
                    scan_dataset(node, path)
        except DataError as e:
            raise UserError(str(e)) from None
    if note and launcher_rank() == 0:
        print(f'--resume: {note}', flush=True)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    try:
        runner = build_runner(build_cfg(args), args.launcher)
    except UserError as e:
        print(f'error: {args.config}: {e}', file=sys.stderr)
        return 2
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

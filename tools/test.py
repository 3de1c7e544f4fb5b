"""Test (evaluate) a checkpoint (mmseg 1.x command line).

Besides mmseg's behaviour, the metrics are written to ``<work_dir>/test_metrics.json``
and printed as one table.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys

from mmengine.config import DictAction

import mmseg_dida  # noqa: F401  (compat layer + registration before mmseg is used)
from mmseg_dida.apis.launch import (
    UserError,
    build_runner,
    exit_process,
    load_config,
    shutdown_distributed,
)
from mmseg_dida.apis.report import format_metrics
from mmseg_dida.deploy.core import drop_training_only_hooks
from mmseg_dida.deploy.model_loading import load_model_weights
from mmseg_dida.deploy.state_mapping import (
    CheckpointMismatchError,
    CheckpointReadError,
    read_checkpoint,
)
from mmseg_dida.utils.atomic_files import atomic_write_text
from mmseg_dida.utils.console import silence_third_party_deprecations


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='MMSeg test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='if specified, the evaluation metric results will be dumped '
        'into the directory as json')
    parser.add_argument(
        '--out', type=str, help='the directory to save the output prediction files')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir', help='directory where the predictions painted on the images are '
        'saved (<show-dir>/vis_data/vis_image/test_<image>_<step>.png, and in its '
        'TensorBoard event file); the primary (target) test set only')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value pairs')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
        help='job launcher')
    parser.add_argument('--tta', action='store_true', help='Test time augmentation')
    parser.add_argument(
        '--non-strict', action='store_true',
        help='load a checkpoint whose tensors do not all match the model (the '
        'matching ones are loaded, the rest keep their initial values)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def trigger_visualization_hook(cfg, args):
    default_hooks = cfg.default_hooks
    if 'visualization' not in default_hooks:
        raise UserError(
            'VisualizationHook must be included in default_hooks to use --show or '
            "--show-dir; refer to 'default_hooks' in the config")
    hook = default_hooks['visualization']
    hook['draw'] = True
    # the configs draw every 50th batch (a picture per validation): --show-dir
    # promises every test image
    hook['interval'] = 1
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        visualizer = cfg.visualizer
        visualizer['save_dir'] = args.show_dir
    return cfg


def build_cfg(args):
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    if not osp.isfile(args.checkpoint):
        raise UserError(f"checkpoint '{args.checkpoint}' does not exist")
    cfg.load_from = None  # loaded strictly by main() (load_model_weights)
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    if args.tta:
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out is not None:
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler'):
        cfg.pop(key, None)  # testing needs none of the training data
    drop_training_only_hooks(cfg)  # nor the training lifecycle (a SIGTERM ends a test)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    silence_third_party_deprecations()
    try:
        cfg = build_cfg(args)
        # read before the runner creates its log folder: a missing or truncated
        # checkpoint leaves nothing behind
        checkpoint = read_checkpoint(args.checkpoint)
        runner = build_runner(cfg, args.launcher)
    except (UserError, CheckpointReadError) as e:
        print(f'error: {args.config}: {e}', file=sys.stderr)
        return 2
    try:
        load_model_weights(runner.model, checkpoint, strict=not args.non_strict)
    except CheckpointMismatchError as e:
        if runner.rank == 0:
            shutil.rmtree(runner.log_dir, ignore_errors=True)
        print(f'error: {args.config}: {e} ({args.checkpoint})', file=sys.stderr)
        return 2
    metrics = runner.test()
    if runner.rank == 0:
        atomic_write_text(osp.join(cfg.work_dir, 'test_metrics.json'), json.dumps(
            {k: float(v) for k, v in metrics.items()}, indent=2))
        print(format_metrics(metrics, title=osp.basename(args.config)))
    shutdown_distributed()
    return 0


if __name__ == '__main__':
    exit_process(main())

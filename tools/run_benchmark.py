"""The main job on the embedded default: generate the procedural benchmark, train
source-only, DAFormer and DAFormer+DiDA (two at a time on two cores, one status line per
run every minute), test each, export each to a plain mmseg model (checked against the
training model), and print the mIoU table and the per-class IoU side by side.

Finished runs (their final checkpoint exists) are reused; interrupted ones resume.

    python tools/run_benchmark.py [--regime pretrained|scratch] [--gap NAME]
        [--methods ...] [--iters N] [--jobs 2] [--work-root DIR] [--data-root DIR]
        [--cfg-options KEY=VALUE ...]

``--regime`` picks how the encoder starts (mmseg_dida/apis/benchmark.py, REGIMES):
``pretrained`` (the default: formula-pretrained weights with DAFormer's feature
distance and learning rates, the ``*_mit_tiny_formula_*`` configs; it puts the known
methods in the literature's order more often, docs/results.md) or ``scratch`` (random
init, the ``*_mit_tiny_*`` configs); the work dirs are named after the configs, so the
two regimes never share one.

``--gap`` picks the benchmark's gap preset (tools/generate_benchmark.py: full, texture,
palette, camera, fog). Each preset has its own data folder (data/procedural for the
default full, data/procedural_<gap> otherwise, or --data-root), generated if missing,
and its own work dirs (suffix _<gap>); every dataset of the configs is re-rooted there
by --cfg-options, and the tables name the preset.
"""
import argparse
import os
import os.path as osp
import sys
import time

from mmengine.config import Config

from mmseg_dida.apis.benchmark import (
    MAIN_METHODS,
    REPO,
    TrainJob,
    add_data_arguments,
    add_regime_argument,
    benchmark_data,
    data_root_of,
    data_root_options,
    methods_of,
    per_class,
    run_tool,
    test_metrics,
    train_many,
)
from mmseg_dida.apis.report import format_per_class, format_table
from mmseg_dida.datasets.procedural import DEFAULT_GAP


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_regime_argument(p)
    p.add_argument('--methods', nargs='+', default=list(MAIN_METHODS),
                   choices=list(methods_of('scratch')),
                   help='default: %(default)s')
    p.add_argument('--iters', type=int, default=None,
                   help="override max_iters (default: each config's schedule); the LR "
                        'decay is stretched or shortened to end there')
    p.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1),
                   help='trainings at a time (default: 2, or 1 on one core)')
    p.add_argument('--status-every', type=float, default=60.0,
                   help='seconds between status lines of the running trainings')
    p.add_argument('--work-root', default=osp.join(REPO, 'work_dirs'))
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='config overrides for training and testing (e.g. a smoke run)')
    add_data_arguments(p)
    return data_root_of(p.parse_args(argv))


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    meta = benchmark_data(args.data_root, args.gap)
    print(f'[benchmark] data: {meta}', flush=True)
    suffix = (f'_{args.gap}' if args.gap != DEFAULT_GAP else '') + (
        f'_{args.iters}it' if args.iters else '')
    configs = methods_of(args.regime)
    jobs = [TrainJob(method, configs[method], osp.join(
        args.work_root, osp.splitext(osp.basename(configs[method]))[0] + suffix),
        data_root_options(Config.fromfile(configs[method]), args.data_root)
        + list(args.cfg_options), max_iters=args.iters) for method in args.methods]
    # DiDA's run is the longest: start it first so the others fill the other core.
    order = sorted(jobs, key=lambda j: 'DiDA' not in j.name)
    ckpts = train_many(order, parallel=args.jobs, status_every=args.status_every,
                       echo=lambda s: print(f'[benchmark] {s}', flush=True))
    rows, classes = [], {}
    for job in jobs:
        print(f'[benchmark] {job.name}: test + export {ckpts[job.name]}', flush=True)
        metrics = test_metrics(job.config, ckpts[job.name], job.work_dir,
                               job.cfg_options)
        run_tool('export.py', [job.config, ckpts[job.name], '--out-dir',
                               osp.join(job.work_dir, 'export'), '--verify'],
                 log_path=osp.join(job.work_dir, 'export_stdout.log'))
        rows.append([job.name, f"{metrics['mIoU']:.2f}", f"{metrics['source/mIoU']:.2f}",
                     f"{metrics['aAcc']:.2f}"])
        classes[job.name] = [per_class(metrics)]
    title = (f'Procedural benchmark, gap {meta["gap"]}, regime {args.regime} '
             f'(seed {meta["seed"]}, '
             f'{meta["size"][0]}x{meta["size"][1]})')
    print()
    print(format_table(rows, ['method', 'target val mIoU', 'source val mIoU',
                              'target aAcc'], title=title))
    print()
    print(format_per_class(classes, title=f'Target val IoU per class, gap '
                                          f'{meta["gap"]}, regime {args.regime}'))
    print(f'[benchmark] done in {(time.time() - start) / 60:.1f} min')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except RuntimeError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)

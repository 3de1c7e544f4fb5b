"""Target mIoU and per-class IoU of source-only, DAFormer and DAFormer + DiDA (or any
methods of mmseg_dida/apis/benchmark.py's table) on the procedural benchmark,
``--seeds`` seeds each, printed side by side as mean +- std.

Each (method, seed) trains with ``tools/train.py`` into ``<work-root>/<method>_s<seed>``
(``--jobs`` at a time, a status line per run every minute); a run whose final
checkpoint exists is reused and an interrupted one resumes, so the command can be
re-run cheaply. Runs go seed-major, so a cut-short run still compares the methods on
the seeds it finished. The metrics are those of ``tools/test.py`` on the final
checkpoint (target val; per class).

``--regime`` picks how the encoder starts (``scratch``: random init; ``pretrained``:
the formula-pretrained weights with DAFormer's feature distance and learning rates);
the work dirs of the pretrained regime get the suffix _pretrained.

``--gap`` picks the benchmark's gap preset (tools/generate_benchmark.py: full, texture,
palette, camera, fog), as in tools/run_benchmark.py: each preset's data lives in its
own folder (data/procedural for the default full, data/procedural_<gap> otherwise, or
``--data-root``), generated if missing; every dataset of the configs is re-rooted
there by cfg-options, the work dirs get the suffix _<gap> and the tables name the
preset.

Usage::

    python tools/benchmarks/accuracy.py --seeds 0 1 2
    python tools/benchmarks/accuracy.py --gap fog --seeds 0 1 2 \\
        --methods DAFormer DAFormer+DiDA
    python tools/benchmarks/accuracy.py --regime pretrained --seeds 0 \\
        --methods source-only DAFormer HRDA 'MIC(HRDA)'
    python tools/benchmarks/accuracy.py --seeds 0 --iters 200   # a quick look
    python tools/benchmarks/accuracy.py --seeds 0 --config abl1=configs/dida/...py
"""
import argparse
import os
import os.path as osp
import sys

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
    test_metrics,
    train_many,
)
from mmseg_dida.apis.report import format_per_class, format_table, mean_std
from mmseg_dida.datasets.procedural import DEFAULT_GAP, default_root


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    add_regime_argument(p)
    p.add_argument('--methods', nargs='+', default=list(MAIN_METHODS),
                   choices=list(methods_of('scratch')), help='default: %(default)s')
    p.add_argument('--config', nargs='+', default=[], metavar='NAME=CONFIG',
                   help='more methods to run, each a name and a config path')
    p.add_argument('--iters', type=int, default=None,
                   help="train this many iterations instead of the configs' schedule; "
                        'the LR decay is stretched or shortened to end there')
    p.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument('--status-every', type=float, default=60.0)
    p.add_argument('--work-root', default=osp.join(REPO, 'work_dirs', 'accuracy'))
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='config overrides for training and testing (e.g. a smoke run)')
    add_data_arguments(p)
    return data_root_of(p.parse_args(argv))


def data_options(config: str, data_root: str) -> list:
    """``--cfg-options`` that re-root ``config``'s datasets at ``data_root`` (none for
    the configs' own data/procedural, whatever a config's data root is)."""
    if osp.normpath(data_root) == osp.normpath(default_root(DEFAULT_GAP)):
        return []
    try:
        return data_root_options(Config.fromfile(config), data_root)
    except ValueError as e:
        raise RuntimeError(f'--data-root {data_root}: {e}') from None


def main(argv=None):
    args = parse_args(argv)
    meta = benchmark_data(args.data_root, args.gap)
    configs = methods_of(args.regime)
    methods = {m: configs[m] for m in args.methods}
    for item in args.config:
        name, sep, path = item.partition('=')
        if not sep or not osp.isfile(path):
            raise RuntimeError(f"--config {item!r}: expected NAME=CONFIG with an "
                               'existing config path')
        methods[name] = path
    suffix = (f'_{args.gap}' if args.gap != DEFAULT_GAP else '') + (
        f'_{args.regime}' if args.regime != 'scratch' else '')
    options = {m: data_options(cfg, args.data_root) for m, cfg in methods.items()}
    jobs = [TrainJob(f'{m} s{seed}', cfg, osp.join(args.work_root, f'{m}_s{seed}{suffix}'),
                     options[m] + [f'randomness.seed={seed}'] + list(args.cfg_options),
                     args.iters)
            for seed in args.seeds for m, cfg in methods.items()]
    train_many(jobs, parallel=args.jobs, status_every=args.status_every,
               echo=lambda s: print(f'[accuracy] {s}', flush=True))
    miou = {m: [] for m in methods}
    classes = {m: [] for m in methods}
    for job in jobs:
        method = job.name.rsplit(' s', 1)[0]
        metrics = test_metrics(job.config, job.checkpoint, job.work_dir, job.cfg_options)
        miou[method].append(metrics['mIoU'])
        classes[method].append(per_class(metrics))
    rows = [[m, mean_std(v), ' / '.join(f'{x:.2f}' for x in v)]
            for m, v in miou.items()]
    title = (f'Procedural benchmark, gap {meta["gap"]}, regime {args.regime}, '
             f'target val, seeds '
             f'{args.seeds}')
    print(format_table(rows, ['method', 'mIoU (mean +- std)', 'per seed'],
                       title=title))
    print()
    print(format_per_class(classes, title=f'{title}: IoU per class'))
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except RuntimeError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)

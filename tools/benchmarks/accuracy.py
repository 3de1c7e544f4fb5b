"""Target mIoU of source-only, DAFormer and DAFormer + DiDA on the procedural benchmark,
``--seeds`` seeds each, printed side by side as mean +- std.

Each (method, seed) trains with ``tools/train.py`` into ``<work-root>/<method>_s<seed>``;
a run whose final checkpoint exists is reused and an interrupted one resumes, so the
command can be re-run cheaply. Runs go seed-major, so a cut-short run still compares
the methods on the seeds it finished. The metric is the target-val mIoU of the run's
last validation (at the final iteration).

Usage::

    python tools/generate_benchmark.py           # once: data/procedural
    python tools/benchmarks/accuracy.py --seeds 0 1 2
    python tools/benchmarks/accuracy.py --seeds 0 --iters 200   # a quick look
"""
import argparse
import os.path as osp
import statistics
import sys

from mmseg_dida.utils.benchmark import METHODS, REPO, last_val_metrics, train_or_reuse
from mmseg_dida.utils.report import format_table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--methods', nargs='+', default=list(METHODS), choices=list(METHODS))
    p.add_argument('--iters', type=int, default=None,
                   help="train this many iterations instead of the configs' schedule; "
                        'the LR decay is stretched or shortened to end there')
    p.add_argument('--work-root', default=osp.join(REPO, 'work_dirs', 'accuracy'))
    args = p.parse_args(argv)
    results = {m: [] for m in args.methods}
    for seed in args.seeds:
        for method in args.methods:
            work_dir = osp.join(args.work_root, f'{method}_s{seed}')
            print(f'[accuracy] {method} seed {seed} -> {work_dir}', flush=True)
            train_or_reuse(METHODS[method], work_dir, [f'randomness.seed={seed}'],
                           max_iters=args.iters,
                           log_path=osp.join(work_dir, 'train_stdout.log'))
            results[method].append(last_val_metrics(work_dir)['mIoU'])
    rows = [[m, f'{statistics.mean(v):.2f}',
             f'{statistics.stdev(v) if len(v) > 1 else 0.0:.2f}',
             ' / '.join(f'{x:.2f}' for x in v)] for m, v in results.items()]
    print(format_table(rows, ['method', 'mean', 'std', 'per seed'],
                       title=f'Procedural benchmark, target val mIoU, seeds {args.seeds}'))
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except RuntimeError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)

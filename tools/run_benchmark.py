"""The main job on the embedded default: generate the procedural benchmark, train
source-only, DAFormer and DAFormer+DiDA, test each, export each to a plain mmseg model
(checked against the training model), and print the mIoU table side by side.

Finished runs (their final checkpoint exists) are reused; interrupted ones resume.

    python tools/run_benchmark.py [--methods ...] [--iters N] [--work-root DIR]
"""
import argparse
import json
import os.path as osp
import sys
import time

from mmseg_dida.datasets.procedural import generate_benchmark, read_meta
from mmseg_dida.utils.benchmark import METHODS, REPO, run_tool, train_or_reuse
from mmseg_dida.utils.report import format_table


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--methods', nargs='+', default=list(METHODS), choices=list(METHODS))
    p.add_argument('--iters', type=int, default=None,
                   help="override max_iters (default: each config's schedule)")
    p.add_argument('--work-root', default=osp.join(REPO, 'work_dirs'))
    p.add_argument('--data-root', default=osp.join(REPO, 'data', 'procedural'))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    meta = read_meta(args.data_root)
    if meta is None:
        print(f'[benchmark] generating {args.data_root}', flush=True)
        meta = generate_benchmark(args.data_root, progress=True)
    print(f'[benchmark] data: {meta}', flush=True)
    rows = []
    for method in args.methods:
        config = METHODS[method]
        stem = osp.splitext(osp.basename(config))[0]
        suffix = f'_{args.iters}it' if args.iters else ''
        work_dir = osp.join(args.work_root, stem + suffix)
        t0 = time.time()
        print(f'[benchmark] {method}: train {config} -> {work_dir} '
              f'(log: {work_dir}/run_train.log)', flush=True)
        ckpt = train_or_reuse(config, work_dir, max_iters=args.iters,
                              log_path=osp.join(work_dir, 'run_train.log'))
        print(f'[benchmark] {method}: test {ckpt}', flush=True)
        run_tool('test.py', [config, ckpt, '--work-dir', osp.join(work_dir, 'test')],
                 log_path=osp.join(work_dir, 'run_test.log'))
        with open(osp.join(work_dir, 'test', 'test_metrics.json')) as f:
            metrics = json.load(f)
        print(f'[benchmark] {method}: export + verify', flush=True)
        run_tool('export.py', [config, ckpt, '--out-dir', osp.join(work_dir, 'export'),
                               '--verify'], log_path=osp.join(work_dir, 'run_export.log'))
        rows.append([method, f"{metrics['mIoU']:.2f}", f"{metrics['source/mIoU']:.2f}",
                     f"{metrics['aAcc']:.2f}", f'{(time.time() - t0) / 60:.1f}'])
    print()
    print(format_table(rows, ['method', 'target val mIoU', 'source val mIoU',
                              'target aAcc', 'minutes'],
                       title=f'Procedural benchmark (seed {meta["seed"]}, '
                       f'{meta["size"][0]}x{meta["size"][1]})'))
    print(f'[benchmark] done in {(time.time() - start) / 60:.1f} min')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except RuntimeError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)

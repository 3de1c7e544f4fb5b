"""Target mIoU of source-only, DAFormer and DAFormer + DiDA on the procedural benchmark,
``--seeds`` seeds each, printed side by side as mean +- std.

Each (method, seed) trains with ``tools/train.py`` into
``<work-root>/<method>_s<seed>``; a run whose ``final_metrics.json`` exists is reused, so
the command can be re-run (or interrupted and resumed) cheaply. The metric read is the
target-val mIoU of the last validation, from the run's ``vis_data/scalars.json``.

Usage::

    python tools/generate_benchmark.py           # once: data/procedural
    python tools/benchmarks/accuracy.py --seeds 0 1 2
    python tools/benchmarks/accuracy.py --seeds 0 --iters 200   # a quick look
"""
import argparse
import glob
import json
import os
import os.path as osp
import statistics
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
METHODS = {
    'source-only': 'configs/benchmark/source_only_mit_tiny_procedural.py',
    'DAFormer': 'configs/benchmark/daformer_mit_tiny_procedural.py',
    'DAFormer+DiDA': 'configs/dida/daformer_mit_tiny_procedural_dida.py',
}


def last_metrics(work_dir: str) -> dict:
    """The last record with 'mIoU' of the newest scalars.json under ``work_dir``."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    for path in reversed(files):
        records = []
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if 'mIoU' in rec:
                    records.append(rec)
        if records:
            return records[-1]
    raise FileNotFoundError(f'no validation record (mIoU) under {work_dir}')


def run(method: str, seed: int, args) -> float:
    work_dir = osp.join(args.work_root, f'{method}_s{seed}')
    final = osp.join(work_dir, 'final_metrics.json')
    if osp.exists(final):
        with open(final) as f:
            return json.load(f)['mIoU']
    opts = [f'randomness.seed={seed}']
    if args.iters:
        opts += [f'train_cfg.max_iters={args.iters}',
                 f'train_cfg.val_interval={args.iters}']
    cmd = [sys.executable, osp.join(REPO, 'tools/train.py'), METHODS[method],
           '--work-dir', work_dir, '--cfg-options', *opts]
    print(f'[{method} seed {seed}] ' + ' '.join(cmd), flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env.setdefault('OMP_NUM_THREADS', '1')
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, 'train_stdout.log'), 'w') as log:
        rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT).returncode
    if rc:
        sys.exit(f'{method} seed {seed} failed (rc {rc}); see {work_dir}')
    metrics = last_metrics(work_dir)
    with open(final, 'w') as f:
        json.dump(metrics, f)
    return metrics['mIoU']


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--methods', nargs='+', default=list(METHODS), choices=METHODS)
    p.add_argument('--iters', type=int, default=None,
                   help='override max_iters (default: the configs\' schedule)')
    p.add_argument('--work-root', default=osp.join(REPO, 'work_dirs', 'accuracy'))
    args = p.parse_args(argv)
    results = {m: [] for m in args.methods}
    for s in args.seeds:  # seed-major: an interrupted run still compares methods
        for m in args.methods:
            results[m].append(run(m, s, args))
    print(f'\nProcedural benchmark, target val mIoU, seeds {args.seeds}')
    print(f'{"method":<16}{"mean":>8}{"std":>8}   per seed')
    for m, vals in results.items():
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        print(f'{m:<16}{statistics.mean(vals):>8.2f}{std:>8.2f}   '
              + ' '.join(f'{v:.2f}' for v in vals))


if __name__ == '__main__':
    main()

"""Generate the procedural source->target benchmark (see mmseg_dida/datasets/procedural.py).

    python tools/generate_benchmark.py data/procedural --seed 0 --size 256 128 \
        --num-train 500 --num-val 100
"""
import argparse
import sys

from mmseg_dida.datasets.procedural import generate_benchmark


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('out_dir', nargs='?', default='data/procedural',
                   help='root folder; gets source/ and target/ in Cityscapes layout')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--size', type=int, nargs=2, default=(256, 128),
                   metavar=('WIDTH', 'HEIGHT'))
    p.add_argument('--num-train', type=int, default=500, help='train images per domain')
    p.add_argument('--num-val', type=int, default=100, help='val images per domain')
    p.add_argument('--overwrite', action='store_true',
                   help='replace a non-empty out_dir')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        meta = generate_benchmark(
            args.out_dir, seed=args.seed, size=tuple(args.size),
            counts=dict(train=args.num_train, val=args.num_val),
            overwrite=args.overwrite, progress=True)
    except (FileExistsError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'wrote {args.out_dir}: {meta}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

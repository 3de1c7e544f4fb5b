"""Generate the procedural source->target benchmark (see mmseg_dida/datasets/procedural.py).

    python tools/generate_benchmark.py data/procedural --seed 0 --size 256 128 \
        --num-train 500 --num-val 100 [--gap full]

``--gap`` picks what the target differs from the source in (procedural.GAPS); the
source images and all labels are the same for every preset of one seed and size:

    full      everything at once: muted palette, noisy textures, camera blur, haze,
              colour cast, sensor noise (the default: the same image and label
              files, pixel for pixel, as before presets existed)
    texture   other high-frequency textures only (source palette, clean camera)
    palette   muted colours, gamma and white-balance shift only (source textures,
              clean camera)
    camera    the target camera's blur, haze towards the horizon and sensor noise only
    fog       fog by the scattering model over a depth read from the layout, denser
              with distance and patchy (source palette, textures, clean camera)

The default folder is data/procedural for ``full`` and data/procedural_<gap> for the
others, so presets never overwrite each other. ``benchmark.json`` records the preset
and ``README.md`` describes it. The configs read data/procedural; to train on another
preset, override their target data roots:

    python tools/train.py configs/dida/daformer_mit_tiny_procedural_dida.py \
        --cfg-options train_dataloader.dataset.target.data_root=data/procedural_fog/target \
        val_dataloader.dataset.data_root=data/procedural_fog/target \
        test_dataloader.dataset.data_root=data/procedural_fog/target

(source-only configs: the last two; data/procedural/source is the same for all presets
of one seed, size and counts), or run ``python tools/run_benchmark.py --gap fog``.
"""
import argparse
import sys

from mmseg_dida.datasets.procedural import DEFAULT_GAP, GAPS, default_root, generate_benchmark


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('out_dir', nargs='?', default=None,
                   help='root folder; gets source/ and target/ in Cityscapes layout '
                        '(default: data/procedural, or data/procedural_<gap>)')
    p.add_argument('--gap', default=DEFAULT_GAP, choices=list(GAPS),
                   help='what the target differs from the source in (default: full)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--size', type=int, nargs=2, default=(256, 128),
                   metavar=('WIDTH', 'HEIGHT'))
    p.add_argument('--num-train', type=int, default=500, help='train images per domain')
    p.add_argument('--num-val', type=int, default=100, help='val images per domain')
    p.add_argument('--overwrite', action='store_true',
                   help='replace a non-empty out_dir')
    args = p.parse_args(argv)
    if args.out_dir is None:
        args.out_dir = default_root(args.gap)
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        meta = generate_benchmark(
            args.out_dir, seed=args.seed, size=tuple(args.size),
            counts=dict(train=args.num_train, val=args.num_val),
            overwrite=args.overwrite, progress=True, gap=args.gap)
    except (FileExistsError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'wrote {args.out_dir}: {meta}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

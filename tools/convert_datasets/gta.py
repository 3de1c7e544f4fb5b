"""Convert GTA5 labels to Cityscapes trainIds and write the RCS statistics.

    python tools/convert_datasets/gta.py data/gta --nproc 8

Reads ``<gta>/labels/<n>.png`` (Cityscapes label ids), writes
``<gta>/labels/<n>_labelTrainIds.png`` and ``sample_class_stats.json``,
``samples_with_class.json`` into ``<gta>`` (or ``--out-dir``). Re-running skips label
files already converted.
"""
import argparse
import os
import os.path as osp

from mmseg_dida.datasets.conversion import TABLES, convert_dataset, find_files, read_palette_label
from mmseg_dida.datasets.rcs import write_rcs_stats


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('gta_path', help='GTA root (holds images/ and labels/)')
    parser.add_argument('--gt-dir', default='labels', help='label folder in gta_path')
    parser.add_argument('-o', '--out-dir', help='where the RCS files go (gta_path)')
    parser.add_argument('--nproc', default=4, type=int, help='worker processes')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_dir = args.out_dir or args.gta_path
    os.makedirs(out_dir, exist_ok=True)
    gt_dir = osp.join(args.gta_path, args.gt_dir)
    # raw files end in a digit: 00001.png (not 00001_labelTrainIds.png)
    files = find_files(gt_dir, r'.*[0-9]\.png')
    pairs = [(f, f[:-len('.png')] + '_labelTrainIds.png') for f in files]
    print(f'converting {len(pairs)} GTA label files in {gt_dir} '
          f'({args.nproc} processes):', flush=True)
    stats = convert_dataset(pairs, TABLES['gta'], read_palette_label, args.nproc,
                            stats_root=out_dir)
    write_rcs_stats(out_dir, stats)
    print(f'done: {len(pairs)} *_labelTrainIds.png in {gt_dir}; RCS statistics of '
          f'{len(stats)} files in {out_dir}')


if __name__ == '__main__':
    main()

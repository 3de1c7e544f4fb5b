"""Convert SYNTHIA RAND-CITYSCAPES labels to Cityscapes trainIds and write the RCS
statistics.

    python tools/convert_datasets/synthia.py data/synthia --nproc 8

Reads ``<synthia>/GT/LABELS/<n>.png`` (16-bit, class id in the first channel; SYNTHIA's
own id table, see ``mmseg_dida/datasets/label_tables.py``), writes
``<synthia>/GT/LABELS/<n>_labelTrainIds.png`` and ``sample_class_stats.json``,
``samples_with_class.json`` into ``<synthia>`` (or ``--out-dir``). Re-running skips label
files already converted.
"""
import argparse
import os
import os.path as osp

from mmseg_dida.datasets.conversion import TABLES, convert_dataset, find_files, read_synthia_label
from mmseg_dida.datasets.rcs import write_rcs_stats


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('synthia_path', help='SYNTHIA root (holds RGB/ and GT/)')
    parser.add_argument('--gt-dir', default='GT/LABELS', help='label folder')
    parser.add_argument('-o', '--out-dir', help='where the RCS files go')
    parser.add_argument('--nproc', default=4, type=int, help='worker processes')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_dir = args.out_dir or args.synthia_path
    os.makedirs(out_dir, exist_ok=True)
    gt_dir = osp.join(args.synthia_path, args.gt_dir)
    files = find_files(gt_dir, r'.*[0-9]\.png')
    pairs = [(f, f[:-len('.png')] + '_labelTrainIds.png') for f in files]
    print(f'converting {len(pairs)} SYNTHIA label files in {gt_dir} '
          f'({args.nproc} processes):', flush=True)
    stats = convert_dataset(pairs, TABLES['synthia'], read_synthia_label, args.nproc,
                            stats_root=out_dir)
    write_rcs_stats(out_dir, stats)
    print(f'done: {len(pairs)} *_labelTrainIds.png in {gt_dir}; RCS statistics of '
          f'{len(stats)} files in {out_dir}')


if __name__ == '__main__':
    main()

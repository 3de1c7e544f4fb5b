"""Convert Cityscapes labels to trainIds and write the RCS statistics of the train split.

    python tools/convert_datasets/cityscapes.py data/cityscapes --nproc 8

Reads ``<cs>/gtFine/<split>/<city>/*_gtFine_labelIds.png`` (shipped in
gtFine_trainvaltest.zip; no cityscapesscripts needed), writes
``*_gtFine_labelTrainIds.png`` next to them, and ``sample_class_stats.json``,
``samples_with_class.json`` (train split only, as DAFormer) into ``<cs>`` (or
``--out-dir``). Re-running skips label files already converted.
"""
import argparse
import os
import os.path as osp

from mmseg_dida.datasets.conversion import TABLES, convert_dataset, find_files, read_palette_label
from mmseg_dida.datasets.rcs import write_rcs_stats


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('cityscapes_path', help='Cityscapes root')
    parser.add_argument('--gt-dir', default='gtFine', help='label folder')
    parser.add_argument('-o', '--out-dir', help='where the RCS files go')
    parser.add_argument('--nproc', default=1, type=int, help='worker processes')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_dir = args.out_dir or args.cityscapes_path
    os.makedirs(out_dir, exist_ok=True)
    gt_dir = osp.join(args.cityscapes_path, args.gt_dir)
    files = find_files(gt_dir, r'.*_gtFine_labelIds\.png')
    pairs = [(f, f.replace('_gtFine_labelIds.png', '_gtFine_labelTrainIds.png'))
             for f in files]
    print(f'converting {len(pairs)} Cityscapes label files in {gt_dir} '
          f'({args.nproc} processes):', flush=True)
    stats = convert_dataset(pairs, TABLES['cityscapes'], read_palette_label,
                            args.nproc, stats_root=out_dir)
    train_dir = osp.join(gt_dir, 'train') + os.sep
    train = [s for s, (src, _) in zip(stats, pairs) if src.startswith(train_dir)]
    write_rcs_stats(out_dir, train)
    print(f'done: {len(pairs)} *_gtFine_labelTrainIds.png in {gt_dir}; RCS '
          f'statistics of the {len(train)} train files in {out_dir}')


if __name__ == '__main__':
    main()

"""Convert GTA5 labels to Cityscapes trainIds and write the RCS statistics.

    python tools/convert_datasets/gta.py data/gta --nproc 8

Reads ``<gta>/labels/<n>.png`` (Cityscapes label ids), writes
``<gta>/labels/<n>_labelTrainIds.png`` and ``sample_class_stats.json``,
``samples_with_class.json`` into ``<gta>`` (or ``--out-dir``). Re-running skips label
files already converted.
"""
import argparse

from mmseg_dida.datasets.conversion import TABLES, convert_label_folder, read_palette_label


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('gta_path', help='GTA root (holds images/ and labels/)')
    parser.add_argument('--gt-dir', default='labels', help='label folder in gta_path')
    parser.add_argument('-o', '--out-dir', help='where the RCS files go (gta_path)')
    parser.add_argument('--nproc', default=4, type=int, help='worker processes')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # raw files end in a digit: 00001.png (not 00001_labelTrainIds.png)
    convert_label_folder('GTA', args.gta_path, args.gt_dir, args.out_dir,
                         r'.*[0-9]\.png',
                         '.png', '_labelTrainIds.png',
                         TABLES['gta'], read_palette_label, args.nproc)


if __name__ == '__main__':
    main()

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

from mmseg_dida.datasets.conversion import TABLES, convert_label_folder, read_synthia_label


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('synthia_path', help='SYNTHIA root (holds RGB/ and GT/)')
    parser.add_argument('--gt-dir', default='GT/LABELS', help='label folder')
    parser.add_argument('-o', '--out-dir', help='where the RCS files go (synthia_path)')
    parser.add_argument('--nproc', default=4, type=int, help='worker processes')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # raw files end in a digit: 0000001.png (not 0000001_labelTrainIds.png)
    convert_label_folder('SYNTHIA', args.synthia_path, args.gt_dir, args.out_dir,
                         r'.*[0-9]\.png',
                         '.png', '_labelTrainIds.png',
                         TABLES['synthia'], read_synthia_label, args.nproc)


if __name__ == '__main__':
    main()

"""Convert Cityscapes labels to trainIds and write the RCS statistics of the train split.

    python tools/convert_datasets/cityscapes.py data/cityscapes --nproc 8

Reads ``<cs>/gtFine/<split>/<city>/*_gtFine_labelIds.png`` (shipped in
gtFine_trainvaltest.zip; no cityscapesscripts needed), writes
``*_gtFine_labelTrainIds.png`` next to them, and ``sample_class_stats.json``,
``samples_with_class.json`` (train split only, as DAFormer) into ``<cs>`` (or
``--out-dir``). Re-running skips label files already converted.
"""
import argparse

from mmseg_dida.datasets.conversion import TABLES, convert_label_folder, read_palette_label


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('cityscapes_path', help='Cityscapes root')
    parser.add_argument('--gt-dir', default='gtFine', help='label folder')
    parser.add_argument('-o', '--out-dir', help='where the RCS files go (cityscapes_path)')
    parser.add_argument('--nproc', default=1, type=int, help='worker processes')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # RCS statistics of the training split only
    convert_label_folder('Cityscapes', args.cityscapes_path, args.gt_dir, args.out_dir,
                         r'.*_gtFine_labelIds\.png',
                         '_gtFine_labelIds.png', '_gtFine_labelTrainIds.png',
                         TABLES['cityscapes'], read_palette_label, args.nproc, rcs_subset='train')


if __name__ == '__main__':
    main()

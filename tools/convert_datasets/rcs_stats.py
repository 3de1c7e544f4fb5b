"""Write the Rare Class Sampling statistics of any folder of trainId label files.

    python tools/convert_datasets/rcs_stats.py data/procedural/gtFine/train \
        -o data/procedural --suffix _labelTrainIds.png --nproc 4

Counts the class pixels of every ``*<suffix>`` file under the folder (recursive) and
writes ``sample_class_stats.json`` and ``samples_with_class.json`` into ``--out-dir``
(the ``data_root`` of the source dataset that ``UDADataset`` reads them from).
"""
import argparse
import re

from mmseg_dida.datasets.conversion import collect_rcs_stats, find_files


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('label_dir', help='folder with trainId label files')
    parser.add_argument('-o', '--out-dir', required=True,
                        help='data_root of the dataset: where the RCS files go')
    parser.add_argument('--suffix', default='_labelTrainIds.png',
                        help='label file name ending')
    parser.add_argument('--nproc', default=1, type=int, help='worker processes')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    files = find_files(args.label_dir, '.*' + re.escape(args.suffix))
    print(f'counting class pixels of {len(files)} label files in {args.label_dir} '
          f'({args.nproc} processes):', flush=True)
    collect_rcs_stats(files, args.out_dir, args.nproc)
    print(f'done: RCS statistics of {len(files)} files in {args.out_dir}')


if __name__ == '__main__':
    main()

"""Write the Rare Class Sampling statistics of a folder of trainId label files or of a
config's source dataset.

    python tools/convert_datasets/rcs_stats.py data/procedural/gtFine/train \
        -o data/procedural --suffix _labelTrainIds.png --nproc 4
    python tools/convert_datasets/rcs_stats.py --config configs/custom/daformer_mit_tiny_custom.py

Counts the class pixels of every ``*<suffix>`` file under the folder (recursive) and
writes ``sample_class_stats.json`` and ``samples_with_class.json`` into ``--out-dir``
(the ``data_root`` of the source dataset that ``UDADataset`` reads them from).

With ``--config`` the label files, the class table and the output folder are those of
the config's training source (``train_dataloader.dataset.source``, or
``train_dataloader.dataset``): the files are those the dataset loads, raw label ids are
mapped to train ids by its ``label_ids`` (``CustomSegDataset``) and the statistics go to
its ``data_root``. Every class of its table is counted.
"""
import argparse
import re
import sys

from mmengine.config import Config, DictAction
from mmseg.registry import DATASETS

import mmseg_dida  # noqa: F401  (compat layer + registration before mmseg is used)
from mmseg_dida.datasets.conversion import collect_rcs_stats, find_files
from mmseg_dida.datasets.label_tables import LabelConversionError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].replace(
        '\n', ' '))
    parser.add_argument('label_dir', nargs='?',
                        help='folder with trainId label files (or use --config)')
    parser.add_argument('-o', '--out-dir',
                        help='data_root of the dataset: where the RCS files go')
    parser.add_argument('--suffix', default='_labelTrainIds.png',
                        help='label file name ending')
    parser.add_argument('--config', help='take the labels, class table and data_root '
                        "of this training config's source dataset")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of --config, key=value pairs')
    parser.add_argument('--nproc', default=1, type=int, help='worker processes')
    args = parser.parse_args(argv)
    if (args.config is None) == (args.label_dir is None):
        parser.error('give a label folder (with -o) or --config, not both')
    if args.config is None and args.out_dir is None:
        parser.error('the label folder needs -o/--out-dir (the dataset data_root)')
    if args.config is not None and args.out_dir is not None:
        parser.error('--config writes into the source data_root; drop -o')
    if args.config is None and args.cfg_options:
        parser.error('--cfg-options needs --config')
    return args


def source_of_config(path: str, cfg_options=None):
    """The training source dataset of a config, built without a pipeline."""
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    node = cfg.get('train_dataloader', {}).get('dataset')
    if isinstance(node, dict) and 'source' in node:
        node = node['source']
    if not isinstance(node, dict) or not node.get('data_root'):
        raise ValueError(f'{path}: train_dataloader.dataset(.source) is no dataset '
                         'with a data_root')
    node = dict(node, pipeline=[])
    return DATASETS.build(node)


def main(argv=None):
    args = parse_args(argv)
    table, num_classes = None, 19
    try:
        if args.config is not None:
            dataset = source_of_config(args.config, args.cfg_options)
            files = [dataset.get_data_info(i).get('seg_map_path')
                     for i in range(len(dataset))]
            if not files or None in files:
                raise ValueError(f'{args.config}: the training source has no labels')
            out_dir = dataset.data_root
            table = getattr(dataset, 'label_table', None)
            num_classes = len(dataset.metainfo['classes'])
            where = f'the source of {args.config}'
        else:
            files = find_files(args.label_dir, '.*' + re.escape(args.suffix))
            out_dir, where = args.out_dir, args.label_dir
        print(f'counting class pixels of {len(files)} label files in {where} '
              f'({args.nproc} processes):', flush=True)
        collect_rcs_stats(files, out_dir, args.nproc, id_to_trainid=table,
                          num_classes=num_classes)
    except (FileNotFoundError, ValueError, LabelConversionError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'done: RCS statistics of {len(files)} files in {out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

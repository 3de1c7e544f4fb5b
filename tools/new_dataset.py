"""Write the configs for training on your own data and print the commands that use them.

    python tools/new_dataset.py NAME --classes road car ... --source DIR --target DIR
        [--palette R,G,B ...] [--label-ids 0,1 2 ...] [--ignore-ids 255]
        [--thing-classes car ...] [--img-dir leftImg8bit] [--ann-dir gtFine]
        [--img-suffix .png] [--seg-map-suffix .png] [--img-scale W H] [--crop H W]

writes ``configs/custom/<NAME>_data.py`` (the folders, class table and sizes: the
template ``configs/_base_/datasets/uda_custom_template.py`` filled in) and
``configs/custom/daformer_mit_tiny_<NAME>.py`` (DAFormer with the small MiT on it),
next to the worked example so that their relative ``_base_`` paths resolve; the
feature distance's classes are the train ids of ``--thing-classes`` (off without);
then prints the commands to count the rare-class statistics, check the data, do a
short trial run, train, test, infer and export. Nothing is written when an argument
is wrong (one ``error:`` line, exit 2) or a file exists (``--overwrite``).
"""
import argparse
import os
import os.path as osp
import re
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TEMPLATE = osp.join(REPO, 'configs/_base_/datasets/uda_custom_template.py')
METHOD = osp.join(REPO, 'configs/custom/daformer_mit_tiny_custom.py')
OUT_DIR = osp.join(REPO, 'configs/custom')


class ArgumentError(ValueError):
    """A wrong argument: printed as one line."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Write the configs for your own data.')
    p.add_argument('name', help='a name for the dataset (letters, digits, _)')
    p.add_argument('--classes', nargs='+', required=True,
                   help='class names; a class\'s train id is its position')
    p.add_argument('--source', required=True, help='root of the labelled source')
    p.add_argument('--target', required=True, help='root of the unlabelled target')
    p.add_argument('--palette', nargs='+', default=None, metavar='R,G,B',
                   help='one colour per class (default: distinct generated colours)')
    p.add_argument('--label-ids', nargs='+', default=None, metavar='ID[,ID...]',
                   help='the raw id(s) of each class in the label files (default: the '
                   'labels hold the train ids 0..N-1 already)')
    p.add_argument('--ignore-ids', nargs='*', type=int, default=[255],
                   help='raw ids of unlabelled pixels (default: 255)')
    p.add_argument('--thing-classes', nargs='*', default=[],
                   help='classes of the feature distance (used with pretrained weights)')
    p.add_argument('--img-dir', default='leftImg8bit')
    p.add_argument('--ann-dir', default='gtFine')
    p.add_argument('--img-suffix', default='_leftImg8bit.png')
    p.add_argument('--seg-map-suffix', default='_gtFine_labelTrainIds.png')
    p.add_argument('--img-scale', nargs=2, type=int, default=(256, 128),
                   metavar=('W', 'H'), help='images are resized to fit (default 256 128)')
    p.add_argument('--crop', nargs=2, type=int, default=(128, 256), metavar=('H', 'W'),
                   help='training crop (default 128 256)')
    p.add_argument('--out-dir', default=OUT_DIR,
                   help='where the configs go (default configs/custom: their _base_ '
                   'paths are relative to it)')
    p.add_argument('--overwrite', action='store_true')
    return p.parse_args(argv)


def _palette(args):
    if args.palette is None:
        import numpy as np
        rng = np.random.default_rng(len(args.classes))
        return [[int(v) for v in rng.integers(0, 256, 3)] for _ in args.classes]
    if len(args.palette) != len(args.classes):
        raise ArgumentError(f'--palette has {len(args.palette)} colours for '
                            f'{len(args.classes)} classes')
    out = []
    for item in args.palette:
        parts = item.split(',')
        if len(parts) != 3 or not all(p.strip().isdigit() and int(p) < 256
                                      for p in parts):
            raise ArgumentError(f"--palette: '{item}' is not R,G,B with values 0..255")
        out.append([int(p) for p in parts])
    return out


def _label_ids(args):
    if args.label_ids is None:
        return None
    if len(args.label_ids) != len(args.classes):
        raise ArgumentError(f'--label-ids has {len(args.label_ids)} entries for '
                            f'{len(args.classes)} classes (one per class, ids joined '
                            'by commas)')
    try:
        return [[int(v) for v in item.split(',')] for item in args.label_ids]
    except ValueError:
        raise ArgumentError(f'--label-ids: {args.label_ids} are not integers') from None


def check(args):
    if not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', args.name):
        raise ArgumentError(f"NAME '{args.name}' must be letters, digits and _")
    parent = osp.dirname(osp.abspath(args.out_dir))
    if not osp.isdir(osp.join(parent, '_base_')):  # the configs say ../_base_/...
        raise ArgumentError(f'--out-dir {args.out_dir}: its parent folder has no _base_ '
                            'folder, so the written configs\' ../_base_ entries would '
                            f'not resolve; use a folder of configs/ (default {OUT_DIR})')
    if len(set(args.classes)) != len(args.classes):
        raise ArgumentError(f'--classes has duplicates: {args.classes}')
    unknown = [c for c in args.thing_classes if c not in args.classes]
    if unknown:
        raise ArgumentError(f'--thing-classes {unknown} are not in --classes '
                            f'{args.classes}')
    for role, root, sub in (('--source', args.source, 'train'),
                            ('--target', args.target, 'train'),
                            ('--target', args.target, 'val')):
        folder = osp.join(root, args.img_dir, sub)
        if not osp.isdir(folder):
            raise ArgumentError(f'{role} {root}: no image folder {folder} (give '
                                '--img-dir, or see docs/own_data.md for the layout)')


def data_config(args, palette, label_ids) -> str:
    """The template with parts 1-3 filled in."""
    text = open(TEMPLATE).read()
    values = dict(
        source_root=repr(args.source), target_root=repr(args.target),
        img_dir=repr(args.img_dir), ann_dir=repr(args.ann_dir),
        img_suffix=repr(args.img_suffix), seg_map_suffix=repr(args.seg_map_suffix),
        classes=repr(tuple(args.classes)), palette=repr(palette),
        label_ids=repr(label_ids), ignore_ids=repr(list(args.ignore_ids)),
        img_scale=repr(tuple(args.img_scale)), crop_size=repr(tuple(args.crop)))
    for key, value in values.items():
        text, n = re.subn(rf'^{key} = .*$', f'{key} = {value}', text, count=1,
                          flags=re.M)
        if n != 1:
            raise RuntimeError(f'{TEMPLATE}: no line "{key} = ..." to fill in')
    head = (f'# The dataset {args.name}, written by tools/new_dataset.py from '
            '../_base_/datasets/uda_custom_template.py (edit parts 1-3 below).\n')
    return head + text


def method_config(args, data_file: str) -> str:
    text = open(METHOD).read()
    text = text.replace("'../_base_/datasets/uda_custom_template.py'",
                        repr('./' + data_file), 1)
    things = [args.classes.index(c) for c in args.thing_classes]
    text, n = re.subn(r'imnet_feature_dist_classes=\[[^\]]*\]',
                      f'imnet_feature_dist_classes={things or None}', text)
    if n != 1:
        raise RuntimeError(f'{METHOD}: no imnet_feature_dist_classes to fill in')
    head = (f'# DAFormer with the small MiT on {args.name} ({data_file}), written by '
            'tools/new_dataset.py.\n')
    return head + text


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        check(args)
        palette, label_ids = _palette(args), _label_ids(args)
        data_file = f'{args.name}_data.py'
        method_file = f'daformer_mit_tiny_{args.name}.py'
        paths = [osp.join(args.out_dir, f) for f in (data_file, method_file)]
        existing = [p for p in paths if osp.exists(p)]
        if existing and not args.overwrite:
            raise ArgumentError(f'{existing[0]} exists; pass --overwrite to replace it')
        texts = [data_config(args, palette, label_ids), method_config(args, data_file)]
    except ArgumentError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)
    from mmseg_dida.utils.atomic_files import atomic_write_text
    for path, text in zip(paths, texts):
        atomic_write_text(path, text)
    config = osp.relpath(paths[1])
    work = f'work_dirs/{osp.splitext(method_file)[0]}'
    print(f'wrote {osp.relpath(paths[0])} and {config}\n')
    print('\n'.join([
        '# 1. rare class sampling statistics (or switch RCS off, see docs/own_data.md)',
        f'python tools/convert_datasets/rcs_stats.py --config {config}',
        '# 2. check every image and label against the class table (one iteration)',
        f'python tools/train.py {config} --check-data --short 1 --work-dir {work}_check',
        '# 3. a short trial run (the whole schedule in 50 iterations)',
        f'python tools/train.py {config} --short 50 --work-dir {work}_trial',
        '# 4. train, test, segment images, export',
        f'python tools/train.py {config}',
        f'python tools/test.py {config} {work}/iter_4000.pth',
        f'python tools/infer.py {config} {work}/iter_4000.pth IMAGES --out {work}/infer',
        f'python tools/export.py {config} {work}/iter_4000.pth --out-dir {work}/export '
        '--verify']))
    return 0


if __name__ == '__main__':
    sys.exit(main())

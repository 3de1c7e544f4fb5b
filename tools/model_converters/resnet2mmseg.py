"""Prepare ResNet ImageNet weights for mmseg 1.x ``ResNetV1c`` (DeepLabV2 backbone of
DAFormer/HRDA/MIC/DiDA, originally loaded as ``open-mmlab://resnet101_v1c``).

The open-mmlab V1c file (https://download.openmmlab.com/pretrain/third_party/
resnet101_v1c-e67eebb6.pth) already uses mmcv/mmseg ResNet key names (deep stem
``stem.{0,1,3,4,6,7}``, ``layer{1-4}.{j}.conv{1,2,3}/bn{1,2,3}/downsample.{0,1}``): the
conversion unwraps the container, strips ``module.``/``backbone.`` prefixes and drops
the ImageNet classifier ``fc.*``. A torchvision ResNet (single 7x7 stem, keys
``conv1``/``bn1``) matches mmseg's ``ResNetV1b`` (``deep_stem=False``) instead; it is
converted only with ``--allow-v1b`` because it cannot initialise ResNetV1c's stem.

Usage (offline)::

    python tools/model_converters/resnet2mmseg.py resnet101_v1c-e67eebb6.pth \\
        pretrained/resnet101_v1c_mmseg.pth
"""
import argparse
import os
import os.path as osp
import re
import sys
from collections import OrderedDict

from mmseg_dida.models.utils.weight_loading import PretrainedLoadError, load_source_checkpoint
from mmseg_dida.utils.atomic_files import atomic_torch_save

_VALID = re.compile(
    r'^(stem\.\d+\.|conv1\.|bn1\.|layer\d+\.\d+\.(conv\d|bn\d|downsample\.\d)\.)'
    r'(weight|bias|running_mean|running_var|num_batches_tracked)$')


def convert_resnet(ckpt, allow_v1b=False):
    """Return an mmseg ResNet state dict from an ImageNet checkpoint object."""
    for key in ('state_dict', 'model'):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    out = OrderedDict()
    for key, value in ckpt.items():
        for prefix in ('module.', 'backbone.'):
            if key.startswith(prefix):
                key = key[len(prefix):]
        if key.startswith('fc.'):
            continue
        if not _VALID.match(key):
            raise ValueError(f'resnet2mmseg: unknown key {key!r}; is this a ResNet '
                             'ImageNet checkpoint?')
        out[key] = value
    deep_stem = any(k.startswith('stem.') for k in out)
    if not deep_stem and not allow_v1b:
        raise ValueError(
            'resnet2mmseg: the checkpoint has a single 7x7 stem (conv1/bn1, '
            'torchvision/ResNetV1b layout); ResNetV1c needs the deep-stem weights '
            'open-mmlab://resnet101_v1c (https://download.openmmlab.com/pretrain/'
            'third_party/resnet101_v1c-e67eebb6.pth). Pass --allow-v1b to convert '
            "it anyway for a backbone with type='ResNetV1b'.")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Prepare ResNet ImageNet weights for mmseg 1.x ResNetV1c')
    parser.add_argument('src', help='e.g. resnet101_v1c-e67eebb6.pth')
    parser.add_argument('dst', help='e.g. pretrained/resnet101_v1c_mmseg.pth')
    parser.add_argument('--allow-v1b', action='store_true',
                        help='accept a single-stem (torchvision) ResNet')
    parser.add_argument(
        '--trust-file', action='store_true',
        help='load with full unpickling (weights_only=False); only for files from '
        'a source you trust whose metadata the safe loader rejects')
    args = parser.parse_args(argv)
    try:
        ckpt = load_source_checkpoint(args.src, args.trust_file)
    except PretrainedLoadError as err:
        raise SystemExit(str(err))
    converted = convert_resnet(ckpt, allow_v1b=args.allow_v1b)
    if osp.dirname(args.dst):
        os.makedirs(osp.dirname(args.dst), exist_ok=True)
    atomic_torch_save(converted, args.dst)  # complete or absent
    print(f'wrote {len(converted)} tensors: {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

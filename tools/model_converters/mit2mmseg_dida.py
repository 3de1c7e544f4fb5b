"""Convert SegFormer's MiT ImageNet weights (``mit_b0.pth`` ... ``mit_b5.pth``, original
NVlabs/SegFormer key layout, as used by DAFormer/HRDA/MIC) into mmseg 1.x
``MixVisionTransformer`` keys.

Usage (offline)::

    python tools/model_converters/mit2mmseg_dida.py mit_b5.pth \\
        pretrained/mit_b5_mmseg.pth

Key map (stage i = 1..4 -> mmseg ``layers.{i-1}``):

    patch_embed{i}.proj / .norm     -> layers.{i-1}.0.projection / .norm
    block{i}.{j}.norm1 / .norm2     -> layers.{i-1}.1.{j}.norm1 / .norm2
    block{i}.{j}.attn.q + attn.kv   -> layers.{i-1}.1.{j}.attn.attn.in_proj_*
                                       (rows of q, then k, v: concatenated)
    block{i}.{j}.attn.proj          -> layers.{i-1}.1.{j}.attn.attn.out_proj
    block{i}.{j}.attn.sr / .norm    -> layers.{i-1}.1.{j}.attn.sr / .norm
    block{i}.{j}.mlp.fc1 (Linear)   -> layers.{i-1}.1.{j}.ffn.layers.0 (1x1 conv)
    block{i}.{j}.mlp.dwconv.dwconv  -> layers.{i-1}.1.{j}.ffn.layers.1
    block{i}.{j}.mlp.fc2 (Linear)   -> layers.{i-1}.1.{j}.ffn.layers.4 (1x1 conv)
    norm{i}                         -> layers.{i-1}.2
    head.*                          -> dropped (ImageNet classifier)

MiT-B5 has 1052 tensors in the original layout (1054 with the classifier) and 948 after
conversion (q and kv merge into one in_proj).
"""
import argparse
import os.path as osp
import re
import sys
from collections import OrderedDict

import torch

from mmseg_dida.models.utils.weight_loading import PretrainedLoadError, load_source_checkpoint
from mmseg_dida.utils.atomic_files import atomic_torch_save

_PATCH = re.compile(r'^patch_embed(\d)\.(proj|norm)\.(weight|bias)$')
_BLOCK = re.compile(r'^block(\d)\.(\d+)\.(.+)$')
_NORM = re.compile(r'^norm(\d)\.(weight|bias)$')
_BLOCK_MAP = {
    'norm1': 'norm1',
    'norm2': 'norm2',
    'attn.proj': 'attn.attn.out_proj',
    'attn.sr': 'attn.sr',
    'attn.norm': 'attn.norm',
    'mlp.fc1': 'ffn.layers.0',
    'mlp.dwconv.dwconv': 'ffn.layers.1',
    'mlp.fc2': 'ffn.layers.4',
}


def unwrap(ckpt):
    """Plain state dict from a checkpoint object (``state_dict``/``model`` containers,
    ``module.`` and ``backbone.`` prefixes removed; decode-head keys dropped)."""
    for key in ('state_dict', 'model'):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    out = OrderedDict()
    has_backbone = any(k.startswith(('backbone.', 'module.backbone.')) for k in ckpt)
    for k, v in ckpt.items():
        if k.startswith('module.'):
            k = k[len('module.'):]
        if has_backbone:
            if not k.startswith('backbone.'):
                continue
            k = k[len('backbone.'):]
        out[k] = v
    return out


def convert_mit(state_dict):
    """Map an original-layout MiT state dict to mmseg 1.x keys (see module doc).

    Raises ValueError on a key it does not know or a q without its kv, so a wrong
    file fails here rather than at training time.
    """
    out = OrderedDict()
    pending_q = {}
    for key, value in state_dict.items():
        if key.startswith('head.'):
            continue
        m = _PATCH.match(key)
        if m:
            stage, part, kind = m.groups()
            part = 'projection' if part == 'proj' else 'norm'
            out[f'layers.{int(stage) - 1}.0.{part}.{kind}'] = value
            continue
        m = _NORM.match(key)
        if m:
            out[f'layers.{int(m.group(1)) - 1}.2.{m.group(2)}'] = value
            continue
        m = _BLOCK.match(key)
        if not m:
            raise ValueError(f'mit2mmseg_dida: unknown key {key!r}; is this a '
                             'SegFormer MiT checkpoint?')
        stage, idx, rest = m.groups()
        prefix = f'layers.{int(stage) - 1}.1.{idx}.'
        name, kind = rest.rsplit('.', 1)
        if name in ('attn.q', 'attn.kv'):
            pending_q.setdefault((prefix, kind), {})[name] = value
            continue
        if name not in _BLOCK_MAP:
            raise ValueError(f'mit2mmseg_dida: unknown block key {key!r}')
        if name in ('mlp.fc1', 'mlp.fc2') and kind == 'weight':
            value = value.reshape(*value.shape, 1, 1)
        out[prefix + _BLOCK_MAP[name] + '.' + kind] = value
    for (prefix, kind), parts in pending_q.items():
        if set(parts) != {'attn.q', 'attn.kv'}:
            raise ValueError(f'mit2mmseg_dida: {prefix} {kind}: attn.q and attn.kv '
                             'must both be present')
        out[f'{prefix}attn.attn.in_proj_{kind}'] = torch.cat(
            [parts['attn.q'], parts['attn.kv']], dim=0)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert SegFormer's MiT ImageNet checkpoint to mmseg 1.x keys")
    parser.add_argument('src', help='original checkpoint, e.g. mit_b5.pth')
    parser.add_argument('dst', help='output, e.g. pretrained/mit_b5_mmseg.pth')
    parser.add_argument(
        '--trust-file', action='store_true',
        help='load with full unpickling (weights_only=False); only for files from '
        'a source you trust whose metadata the safe loader rejects')
    args = parser.parse_args(argv)
    try:
        ckpt = load_source_checkpoint(args.src, args.trust_file)
    except PretrainedLoadError as err:
        raise SystemExit(str(err))
    src = unwrap(ckpt)
    converted = convert_mit(src)
    if osp.dirname(args.dst):
        import os
        os.makedirs(osp.dirname(args.dst), exist_ok=True)
    atomic_torch_save(converted, args.dst)  # complete or absent
    print(f'converted {len(src)} tensors into {len(converted)} mmseg keys: '
          f'{args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

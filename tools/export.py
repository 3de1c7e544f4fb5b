"""Export a UDA training checkpoint (DAFormer/HRDA/MIC, with or without DiDA) to a
plain mmseg segmentor: checkpoint + config that mmseg's ``init_model`` / ``tools/test.py``
load without this project's training components.

What is kept: the student segmentor h o g (a DiDA DiffusionEncoder is replaced by its
inner g). What is dropped: DiDA's g', time MLP, FiLMs and h', the EMA teacher, the
ImageNet feature-distance model, every plug-in. The exported network has exactly the
baseline's parameter names and count; ``--verify`` checks that, and that its
predictions equal the training model's clean-path predictions on a random image.

Usage::

    python tools/export.py CONFIG CHECKPOINT [--out-dir DIR] [--name NAME] [--verify]
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, ConfigDict  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402

import mmseg_dida  # noqa: F401  (compat + registration)
from mmseg_dida.engine.hooks.dida_hook import save_deployable  # noqa: E402
from mmseg_dida.models.uda.dida import deploy_config  # noqa: E402
from mmseg_dida.utils.checkpoint import (  # noqa: E402
    CheckpointMismatchError,
    CheckpointReadError,
    load_model_weights,
)


def _strip_init(cfg):
    """No pretrained files are needed: the weights come from the checkpoint."""
    if isinstance(cfg, dict):
        cfg.pop('init_cfg', None)
        if 'pretrained' in cfg:
            cfg['pretrained'] = None
        for v in cfg.values():
            _strip_init(v)
    elif isinstance(cfg, list):
        for v in cfg:
            _strip_init(v)


def build_training_model(cfg: Config, checkpoint: str, strict: bool = True):
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model_cfg = ConfigDict(cfg.model.to_dict() if hasattr(cfg.model, 'to_dict')
                           else cfg.model)
    _strip_init(model_cfg)
    model = MODELS.build(model_cfg)
    report = load_model_weights(model, checkpoint, strict=strict)
    if report.meta:
        model.dataset_meta = report.meta.get('dataset_meta')
    return model.eval()


@torch.no_grad()
def verify(model, cfg: Config, ckpt_path: str, size=(64, 128)) -> dict:
    """Build the plain segmentor from the exported config, load it strictly, and
    compare parameter names/count and clean-path logits with the training model."""
    plain_cfg = deploy_config(cfg)
    model_cfg = ConfigDict(plain_cfg.model)
    _strip_init(model_cfg)
    plain = MODELS.build(model_cfg)
    state = torch.load(ckpt_path, map_location='cpu')['state_dict']
    plain.load_state_dict(state, strict=True)
    plain.eval()
    student = getattr(model, 'student', model)
    baseline = MODELS.build(model_cfg)  # the baseline architecture, fresh
    names = [n for n, _ in plain.named_parameters()]
    same_names = names == [n for n, _ in baseline.named_parameters()]
    count = sum(p.numel() for p in plain.parameters())
    torch.manual_seed(0)
    x = torch.randn(1, 3, *size)
    metas = [dict(img_shape=size, ori_shape=size, pad_shape=size)]
    diff = (plain.encode_decode(x, metas) - student.encode_decode(x, metas)).abs().max()
    return dict(same_names_as_baseline=same_names, num_params=count,
                baseline_num_params=sum(p.numel() for p in baseline.parameters()),
                max_abs_logit_diff=diff.item())


def main(argv=None):
    p = argparse.ArgumentParser(description='Export a deployable mmseg segmentor.')
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--out-dir', default=None,
                   help='default: the checkpoint folder')
    p.add_argument('--name', default='deploy')
    p.add_argument('--verify', action='store_true')
    p.add_argument('--non-strict', action='store_true',
                   help='export although the checkpoint does not fill every tensor '
                   'of the model')
    args = p.parse_args(argv)
    cfg = Config.fromfile(args.config)
    try:
        model = build_training_model(cfg, args.checkpoint, strict=not args.non_strict)
    except (CheckpointReadError, CheckpointMismatchError) as e:
        sys.exit(f'error: {args.config}: {e}')
    out_dir = args.out_dir or osp.dirname(osp.abspath(args.checkpoint))
    os.makedirs(out_dir, exist_ok=True)
    ckpt_path, cfg_path = save_deployable(model, cfg, out_dir, args.name)
    print(f'checkpoint: {ckpt_path}\nconfig: {cfg_path}')
    if args.verify:
        report = verify(model, cfg, ckpt_path)
        print(' '.join(f'{k}={v}' for k, v in report.items()))
        ok = (report['same_names_as_baseline'] and report['max_abs_logit_diff'] == 0
              and report['num_params'] == report['baseline_num_params'])
        if not ok:
            sys.exit('export verification FAILED')
        print('export verification passed')


if __name__ == '__main__':
    main()

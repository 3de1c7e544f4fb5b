"""Pretrain the procedural benchmark's small MiT on formula-driven images (no natural
image): IFS fractal categories composed into labelled images, segmented per pixel (see
mmseg_dida/datasets/formula.py and mmseg_dida/engine/formula_pretrain.py).

    python tools/pretrain_formula.py [--out pretrained/mit_tiny_formula.pth] \
        [--work-dir work_dirs/pretrain_formula] [--resume] [--seed 0] [--steps 9000]

One CPU core (``--threads``), deterministic under ``--seed``; a status line with the ETA
every ``--status-every`` seconds and the held-out accuracy every ``--eval-interval``
steps. ``--resume`` continues from ``<work-dir>/latest.pth`` exactly (the same
weights as an uninterrupted run). At the end the encoder's weights go to ``--out``
(complete or absent) and their size and SHA-256 are printed with the command that
rebuilds them.
"""
import argparse
import os
import os.path as osp
import sys
import time

import torch

from mmseg_dida.engine.formula_pretrain import FormulaPretrainer, PretrainSettings

DEFAULTS = PretrainSettings()


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Pretrain the benchmark small MiT on formula-driven images.')
    p.add_argument('--out', default='pretrained/mit_tiny_formula.pth',
                   help='the encoder weights (default: %(default)s)')
    p.add_argument('--work-dir', default='work_dirs/pretrain_formula',
                   help='checkpoint and curve (default: %(default)s)')
    p.add_argument('--resume', action='store_true',
                   help='continue from <work-dir>/latest.pth')
    for key, value in vars(DEFAULTS).items():
        p.add_argument('--' + key.replace('_', '-'), type=type(value), default=value,
                       help=f'default: {value}')
    p.add_argument('--ckpt-interval', type=int, default=500)
    p.add_argument('--status-every', type=float, default=30.0, help='seconds')
    p.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = PretrainSettings(**{k: getattr(args, k) for k in vars(DEFAULTS)})
    t0 = time.time()
    try:
        trainer = FormulaPretrainer(settings, args.work_dir,
                                    ckpt_interval=args.ckpt_interval,
                                    echo=lambda s: print(s, flush=True))
        if not args.resume and osp.isfile(trainer.checkpoint_path):
            raise ValueError(f'{trainer.checkpoint_path} exists: continue it with '
                             '--resume or choose another --work-dir')
        if args.resume and trainer.resume():
            print(f'[pretrain] resumed at step {trainer.step}', flush=True)
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'[pretrain] {trainer.data.num_categories} IFS categories, '
          f'{sum(len(b) for b in trainer.data.bank)} instances, settings {settings}',
          flush=True)
    trainer.run(status_every=args.status_every)
    flags = ' '.join(f"--{k.replace('_', '-')} {getattr(args, k)}"
                     for k in vars(DEFAULTS) if getattr(args, k) != getattr(DEFAULTS, k))
    command = ('python tools/pretrain_formula.py --out ' + args.out
               + (' ' + flags if flags else ''))
    info = trainer.export_backbone(args.out, command=command)
    final = info['heldout']
    print(f"[pretrain] done in {(time.time() - t0) / 60:.1f} min: {info['path']} "
          f"({info['bytes']:,} bytes, sha256 {info['sha256']}); held-out acc "
          f"{final.get('acc', float('nan')):.4f}, mIoU {final.get('miou', float('nan')):.4f}"
          f'\n[pretrain] rebuild: {command}', flush=True)
    return 0


if __name__ == '__main__':
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    sys.exit(main())

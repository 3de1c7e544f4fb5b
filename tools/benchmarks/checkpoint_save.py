"""What a checkpoint save adds to training: the time of one complete, atomic write of a
config's training state (every model tensor and the AdamW state, as
``ResumableCheckpointHook`` writes them), side by side for the configs given, and its
share of a ``time_interval`` (default the paper schedule's 30 minutes).

    python tools/benchmarks/checkpoint_save.py [CONFIG ...] [--out-dir DIR] [--repeat 3]
        [--interval-min 30]

The default configs are the procedural benchmark's DAFormer + DiDA and the paper's
DAFormer + DiDA with MiT-B5 (built without its ImageNet file). The file goes to
``--out-dir`` (default: a temporary folder under work_dirs/, the disk checkpoints go
to) and is removed afterwards.
"""
import argparse
import os
import os.path as osp
import shutil
import sys
import tempfile
import time

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.deploy.model_loading import strip_pretrained_init
from mmseg_dida.utils.atomic_files import atomic_torch_save

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIGS = ['configs/dida/daformer_mit_tiny_procedural_dida.py',
                   'configs/dida/daformer_mitb5_gta2cs_dida.py']


def training_state(config: str) -> dict:
    """What a runner checkpoint of ``config`` holds: the model's state dict and the
    AdamW state of its trainable parameters (after one step, so that both moments
    exist)."""
    cfg = Config.fromfile(osp.join(REPO, config))
    init_default_scope('mmseg')
    model_cfg = ConfigDict(cfg.model.to_dict())
    strip_pretrained_init(model_cfg)
    model = MODELS.build(model_cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-4)
    for p in params:
        p.grad = torch.zeros_like(p)
    optim.step()
    return dict(meta=dict(iter=1), state_dict=model.state_dict(),
                optimizer=optim.state_dict())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description='Time of one checkpoint save per config.')
    p.add_argument('configs', nargs='*', default=DEFAULT_CONFIGS)
    p.add_argument('--out-dir', default=osp.join(REPO, 'work_dirs'))
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--interval-min', type=float, default=30.0)
    args = p.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    folder = tempfile.mkdtemp(prefix='checkpoint_save_', dir=args.out_dir)
    rows = []
    try:
        for config in args.configs:
            state = training_state(config)
            path = osp.join(folder, 'ckpt.pth')
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                atomic_torch_save(state, path)
                times.append(time.perf_counter() - start)
                size = osp.getsize(path)
                os.remove(path)
            best = min(times)
            rows.append((config, size, best, size / best / 1e6,
                         100.0 * best / (60.0 * args.interval_min)))
            del state
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{'config':58s} {'MB':>8s} {'save s':>8s} {'MB/s':>8s} "
          f"{'% of ' + str(args.interval_min) + ' min':>12s}")
    for config, size, best, rate, share in rows:
        print(f'{config:58s} {size / 1e6:8.1f} {best:8.2f} {rate:8.0f} {share:12.3f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

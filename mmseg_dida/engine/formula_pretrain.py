"""Formula-driven pretraining of the benchmark's small MiT (``tools/pretrain_formula.py``).

The encoder of ``configs/_base_/models/benchmark_mit_tiny.py`` and a SegFormer MLP head
learn to segment the IFS categories of :class:`mmseg_dida.datasets.formula.FormulaSet`
(per-pixel cross-entropy over the categories and the background), so that the procedural
benchmark can start from a pretrained encoder as DAFormer, HRDA, MIC and DiDA start from
ImageNet, without a natural image. The encoder's weights are the product: a state dict
in ``MixVisionTransformer``'s keys that ``CheckedPretrained`` loads strictly.

Exact and resumable: the images of step ``k`` are a function of ``(seed, k)``, the
learning rate a function of ``k``, and the checkpoint ``<work_dir>/latest.pth`` (written
every ``ckpt_interval`` steps, complete or absent) holds the model, the optimiser, torch's
random state (drop path) and the curve, so a run resumed from step ``k`` ends with the
same weights as one that never stopped.
"""
import hashlib
import json
import logging
import math
import os
import os.path as osp
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from torch import nn

from ..datasets.formula import HELDOUT_STREAM, TRAIN_STREAM, FormulaSet
from ..utils.atomic_files import atomic_torch_save, atomic_write_text

__all__ = ['PretrainSettings', 'FormulaPretrainer', 'sha256_of']

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODEL_CONFIG = osp.join(REPO, 'configs', '_base_', 'models', 'benchmark_mit_tiny.py')


@dataclass
class PretrainSettings:
    """Everything that decides the weights (stored in the checkpoint: a resume with
    other settings is refused)."""
    seed: int = 0
    steps: int = 12000
    batch_size: int = 16
    image_size: int = 96
    num_categories: int = 32
    max_instances: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 300
    heldout: int = 256
    eval_interval: int = 500

    def check(self) -> None:
        for key in ('steps', 'batch_size', 'num_categories', 'heldout', 'eval_interval'):
            if getattr(self, key) < 1:
                raise ValueError(f'pretraining: {key} must be >= 1, got '
                                 f'{getattr(self, key)}')
        if not 0 <= self.warmup < self.steps:
            raise ValueError(f'pretraining: warmup must be in [0, steps), got '
                             f'{self.warmup}')

    def lr_at(self, step: int) -> float:
        """Linear warm-up to ``lr``, then cosine decay to 0 at ``steps``."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(self.steps - self.warmup, 1)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


class FormulaSegmentor(nn.Module):
    """The benchmark's small MiT with a SegFormer MLP head for the formula classes."""

    def __init__(self, num_classes: int, model_config: str = MODEL_CONFIG):
        super().__init__()
        init_default_scope('mmseg')
        from mmseg.registry import MODELS
        cfg = Config.fromfile(model_config).model
        self.backbone = MODELS.build(cfg.backbone)
        head = dict(cfg.decode_head, type='SegformerHead', num_classes=num_classes)
        head.pop('loss_decode', None)
        self.head = MODELS.build(head)
        # MiT's own init, as a benchmark run's; mmengine logs every tensor's init
        # at INFO, which would bury the status lines
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            self.backbone.init_weights()
            self.head.init_weights()
        finally:
            logger.setLevel(level)
        mean = torch.tensor(cfg.data_preprocessor.mean).view(1, 3, 1, 1)
        std = torch.tensor(cfg.data_preprocessor.std).view(1, 3, 1, 1)
        # the benchmark's normalisation of RGB images (its loader reads BGR and the
        # data preprocessor converts), so the encoder sees the same input statistics
        self.register_buffer('mean', mean, persistent=False)
        self.register_buffer('std', std, persistent=False)

    def forward(self, images_rgb_uint8: torch.Tensor) -> torch.Tensor:
        """Logits at the head's output stride (4)."""
        x = (images_rgb_uint8.permute(0, 3, 1, 2).float().contiguous()
             - self.mean) / self.std
        return self.head(self.backbone(x))


def labels_at_stride(labels: torch.Tensor, stride: int) -> torch.Tensor:
    """The label at the centre of each ``stride`` x ``stride`` cell: the training
    loss is taken at the head's resolution (a full-resolution softmax and the
    upsampling's backward took two thirds of a step)."""
    return labels[:, stride // 2::stride, stride // 2::stride]


class FormulaPretrainer:
    """Pretrain, evaluate on held-out formula images, checkpoint and resume.

    Args:
        settings: What decides the weights.
        work_dir: ``latest.pth`` and ``history.json`` go there.
        ckpt_interval: Steps between checkpoints.
        echo: Where status lines go.
    """

    def __init__(self, settings: PretrainSettings, work_dir: str,
                 ckpt_interval: int = 500, echo: Callable[[str], None] = print):
        settings.check()
        self.s = settings
        self.work_dir = work_dir
        self.ckpt_interval = ckpt_interval
        self.echo = echo
        torch.manual_seed(settings.seed)
        self.data = FormulaSet(num_categories=settings.num_categories,
                               seed=settings.seed, image_size=settings.image_size,
                               max_instances=settings.max_instances)
        self.model = FormulaSegmentor(self.data.num_classes)
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (no_decay if p.ndim <= 1 or 'pos' in name else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [dict(params=decay, weight_decay=settings.weight_decay),
             dict(params=no_decay, weight_decay=0.0)], lr=settings.lr)
        self.step = 0
        self.history: List[Dict] = []

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> str:
        return osp.join(self.work_dir, 'latest.pth')

    def save(self) -> None:
        os.makedirs(self.work_dir, exist_ok=True)
        atomic_torch_save(dict(step=self.step, settings=asdict(self.s),
                               model=self.model.state_dict(),
                               optimizer=self.optimizer.state_dict(),
                               torch_rng=torch.get_rng_state(),
                               history=self.history), self.checkpoint_path)
        atomic_write_text(osp.join(self.work_dir, 'history.json'),
                          json.dumps(self.history, indent=1) + '\n')

    def resume(self) -> bool:
        """Continue from ``latest.pth`` if there is one; False if there is none."""
        if not osp.isfile(self.checkpoint_path):
            return False
        ckpt = torch.load(self.checkpoint_path, map_location='cpu', weights_only=True)
        if ckpt['settings'] != asdict(self.s):
            diff = {k: (v, asdict(self.s)[k]) for k, v in ckpt['settings'].items()
                    if asdict(self.s).get(k) != v}
            raise ValueError(f'{self.checkpoint_path} was written with other settings '
                             f'(checkpoint, now): {diff}; use another --work-dir or the '
                             'same settings')
        self.model.load_state_dict(ckpt['model'])
        self.optimizer.load_state_dict(ckpt['optimizer'])
        torch.set_rng_state(ckpt['torch_rng'])
        self.step = int(ckpt['step'])
        self.history = list(ckpt['history'])
        return True

    # --------------------------------------------------------------------- training
    def train_step(self) -> float:
        self.model.train()
        for group in self.optimizer.param_groups:
            group['lr'] = self.s.lr_at(self.step)
        imgs, labels = self.data.batch(TRAIN_STREAM, range(self.s.batch_size),
                                       self.step)
        logits = self.model(torch.from_numpy(imgs))
        gt = labels_at_stride(torch.from_numpy(labels).long(),
                              imgs.shape[1] // logits.shape[-2])
        loss = F.cross_entropy(logits, gt)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    @torch.no_grad()
    def evaluate(self) -> Dict[str, float]:
        """Pixel accuracy, foreground accuracy and mIoU (classes present) on the
        held-out images."""
        self.model.eval()
        n = self.data.num_classes
        conf = torch.zeros(n, n, dtype=torch.long)
        loss_sum = 0.0
        for start in range(0, self.s.heldout, 32):
            idx = range(start, min(start + 32, self.s.heldout))
            imgs, labels = self.data.batch(HELDOUT_STREAM, idx)
            logits = F.interpolate(self.model(torch.from_numpy(imgs)),
                                   size=labels.shape[-2:], mode='bilinear',
                                   align_corners=False)
            gt = torch.from_numpy(labels).long()
            loss_sum += float(F.cross_entropy(logits, gt, reduction='sum'))
            pred = logits.argmax(1)
            conf += torch.bincount(gt.flatten() * n + pred.flatten(),
                                   minlength=n * n).view(n, n)
        tp = conf.diag().double()
        iou = tp / (conf.sum(0) + conf.sum(1) - conf.diag()).double().clamp(min=1)
        present = conf.sum(1) > 0
        return dict(loss=loss_sum / conf.sum().item(),
                    acc=float(tp.sum() / conf.sum()),
                    fg_acc=float(tp[1:].sum() / conf[1:].sum().clamp(min=1)),
                    miou=float(iou[present].mean()))

    def run(self, status_every: float = 30.0) -> None:
        start_step, t0, last = self.step, time.time(), time.time()
        losses: List[float] = []
        while self.step < self.s.steps:
            losses.append(self.train_step())
            if self.step % self.s.eval_interval == 0 or self.step == self.s.steps:
                metrics = self.evaluate()
                self.history.append(dict(step=self.step,
                                         train_loss=float(np.mean(losses)), **metrics))
                losses = []
                self.echo(f'[pretrain] step {self.step}: held-out acc '
                          f"{metrics['acc']:.4f}, fg acc {metrics['fg_acc']:.4f}, mIoU "
                          f"{metrics['miou']:.4f}, loss {metrics['loss']:.4f}")
            if self.step % self.ckpt_interval == 0 or self.step == self.s.steps:
                self.save()
            now = time.time()
            if now - last >= status_every:
                last = now
                rate = (now - t0) / (self.step - start_step)
                eta = rate * (self.s.steps - self.step)
                recent = f' loss {np.mean(losses):.4f}' if losses else ''
                self.echo(f'[pretrain] step {self.step}/{self.s.steps}{recent} lr '
                          f'{self.s.lr_at(self.step):.2e} {rate:.3f} s/step, ETA '
                          f'{eta / 60:.1f} min')

    def export_backbone(self, out: str, command: Optional[str] = None) -> Dict:
        """Write the encoder's state dict (``MixVisionTransformer`` keys) to ``out``,
        complete or absent, with the settings and the held-out curve's last point as
        metadata; return what was written (path, size, SHA-256, metrics)."""
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        final = self.history[-1] if self.history else {}
        meta = dict(settings=asdict(self.s), heldout=final, command=command or '')
        atomic_torch_save(dict(state_dict=self.model.backbone.state_dict(), meta=meta),
                          out)
        return dict(path=out, bytes=os.path.getsize(out), sha256=sha256_of(out),
                    **meta)

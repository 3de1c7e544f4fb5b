"""Diagnostics of DiDA's open readings of the paper (issue 28), before any run is spent.

``gradients``: a short training of CONFIG (its own data, schedule and seed) that taps
every loss group of the UDA step at every ``--every``-th iteration and records the norm
of each loss term's gradient into the encoder g (L_S, L_FD, L_T, L_D's source and
target terms, L_R), by ``torch.autograd.grad`` on the step's own graph (nothing of the
step changes), and at every iteration the size of g's update (the L2 norm of the
parameter change over the L2 norm of the parameters). Writes ``gradients.jsonl`` and
prints the ratio L_R / L_S of the gradient norms into g and the update size, averaged
over windows of iterations::

    python tools/analysis/dida_readings.py gradients CONFIG [--iters 500] [--every 10]
        [--out DIR] [--cfg-options k=v ...]

``t-buckets``: for a trained DiDA checkpoint, source val and target val images are
degraded at t = 5, 15, ..., 95 (the same eps per image at every t) and segmented by the
degraded path (h o (g + g') at t) in eval mode, one image at a time: BatchNorm layers
use their running statistics (the clean images'), where training normalises with the
degraded batch's own statistics, so read the trend over t rather than the level. Per
t: source cross-entropy and accuracy against the labels, and on target L_D's target
term in training's form (cross-entropy against the EMA teacher's pseudo labels of the
clean image, weighted by its confidence q^T), the agreement with those pseudo labels,
and the accuracy against the labels the training never sees; per class, the recall
against the labels (both domains) and the agreement with the pseudo labels (target),
pixels summed over the images (columns ``recall.<class>``, ``agree.<class>``: whether
thin classes lose their signal at lower t than large ones). Also, per domain, the t
from which the noise's std exceeds the class signal (the std of the class-mean colours
of the normalised image, times sqrt(abar_t)). Writes ``t_buckets.csv``::

    python tools/analysis/dida_readings.py t-buckets CONFIG CHECKPOINT [--max-images N]

``bn-stats``: for a trained DiDA checkpoint, the batch statistics that each BatchNorm
layer of the student sees in the degraded pass over degraded source and target images
(t drawn as training does): per layer, the standardised difference of the two
domains' batch means and the ratio of their batch variances, and L_D's source and
target terms with joint and with per-domain statistics. Writes ``bn_stats.json``::

    python tools/analysis/dida_readings.py bn-stats CONFIG CHECKPOINT [--batches 8]
"""
import argparse
import csv
import io
import json
import os
import os.path as osp
import sys
import tempfile
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmseg.evaluation import IoUMetric
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

import mmseg_dida  # noqa: F401
from mmseg_dida.deploy.model_loading import build_model_from_checkpoint
from mmseg_dida.models.backbones import DiffusionEncoder
from mmseg_dida.models.losses.loss_keys import is_loss_key
from mmseg_dida.models.segmentors.uda_segmentor import as_uda_segmentor
from mmseg_dida.models.uda.dida import DiDA
from mmseg_dida.models.uda.ema_teacher import disable_stochastic_layers
from mmseg_dida.models.utils.norm_buffers import per_part_batch_norm, preserved_norm_buffers
from mmseg_dida.utils.atomic_files import atomic_write, atomic_write_text

T_GRID = tuple(range(5, 100, 10))


def encoder_g(model) -> torch.nn.Module:
    """The student's encoder g (inside DiDA's wrapper when there is one)."""
    backbone = model.student.backbone
    return backbone.backbone if isinstance(backbone, DiffusionEncoder) else backbone


# ------------------------------------------------------------------- gradients
class GradientTap(Hook):
    """Records, every ``every`` iterations, the norm of each loss term's gradient
    into g, and at every iteration g's relative update size."""

    def __init__(self, every: int, path: str):
        self.every = every
        self.path = path
        self.records: List[dict] = []
        self._before: Optional[List[Tensor]] = None
        self._grads: Dict[str, float] = {}

    def before_train(self, runner) -> None:
        model = runner.model
        self.params = [p for p in encoder_g(model).parameters() if p.requires_grad]
        original = model.loss_groups

        def tapped(ctx):
            for name, losses in original(ctx):
                if self._tap:
                    for key, value in losses.items():
                        if is_loss_key(key) and value.requires_grad:
                            grads = torch.autograd.grad(value.mean(), self.params,
                                                        retain_graph=True,
                                                        allow_unused=True)
                            sq = sum(float(g.pow(2).sum()) for g in grads
                                     if g is not None)
                            self._grads[key] = self._grads.get(key, 0.0) + sq
                yield name, losses
        model.loss_groups = tapped

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._tap = runner.iter % self.every == 0
        self._grads = {}
        self._before = [p.detach().clone() for p in self.params]

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        with torch.no_grad():
            step = sum(float((p - b).pow(2).sum()) for p, b in zip(self.params,
                                                                     self._before))
            norm = sum(float(p.pow(2).sum()) for p in self.params)
        rec = dict(iter=runner.iter, update=(step / norm) ** 0.5)
        if self._tap:
            rec['grad'] = {k: v ** 0.5 for k, v in self._grads.items()}
        self.records.append(rec)
        with open(self.path, 'a') as f:
            f.write(json.dumps(rec) + '\n')


def gradient_summary(records: List[dict], windows=((0, 1), (1, 10), (10, 100),
                                                   (100, 300), (300, 500))) -> str:
    """Per window of iterations: the mean gradient norm of each term into g, the
    ratio L_R / L_S and g's mean relative update size."""
    lines = ['| iterations | |grad_g L_S| | |grad_g L_R| | L_R / L_S | |grad_g L_D src| '
             '| |grad_g L_D tgt| | update |g| (x1e-4) |', '|---|---|---|---|---|---|---|']
    for lo, hi in windows:
        part = [r for r in records if lo <= r['iter'] < hi]
        tapped = [r['grad'] for r in part if 'grad' in r]
        if not part:
            continue

        def mean(key):
            vals = [g.get(key) for g in tapped if g.get(key) is not None]
            return float(np.mean(vals)) if vals else float('nan')
        ls, lr = mean('src.decode.loss_ce'), mean('loss_recon')
        lines.append(f'| {lo}-{hi - 1} | {ls:.3f} | {lr:.3f} | {lr / ls:.2f} | '
                     f"{mean('loss_dic_src'):.3f} | {mean('loss_dic_tgt'):.3f} | "
                     f"{1e4 * np.mean([r['update'] for r in part]):.2f} |")
    return '\n'.join(lines)


def run_gradients(args) -> int:
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = tempfile.mkdtemp(prefix='dida_gradients_')
    cfg.train_cfg.update(max_iters=args.iters, val_interval=args.iters + 1)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=10 ** 9, save_last=False)
    cfg.default_hooks.visualization = dict(type='SegVisualizationHook', draw=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=50)
    cfg.custom_hooks = []
    cfg.log_level = 'WARNING'
    os.makedirs(args.out, exist_ok=True)
    path = osp.join(args.out, 'gradients.jsonl')
    if osp.exists(path):
        os.remove(path)
    runner = Runner.from_cfg(cfg)
    tap = GradientTap(args.every, path)
    runner.register_hook(tap, priority='LOWEST')
    runner.train()
    print(f'[readings] {args.config} {args.cfg_options or ""}: gradient norms into g '
          f'and relative update of g ({path})')
    print(gradient_summary(tap.records))
    return 0


# ------------------------------------------------------------------- t-buckets
def load(config: str, checkpoint: str, options=None):
    cfg = Config.fromfile(config)
    if options:
        cfg.merge_from_dict(options)
    model, _ = build_model_from_checkpoint(cfg, checkpoint, strict=True)
    plugin = next((p for p in model.plugins if isinstance(p, DiDA)), None)
    if plugin is None:
        raise ValueError(f'{config}: no DiDA plug-in')
    return cfg, model.eval(), plugin


def _image_loader(loader_cfg):
    """``loader_cfg`` one image at a time, in this process."""
    return Runner.build_dataloader(dict(loader_cfg, batch_size=1, num_workers=0,
                                        persistent_workers=False))


def _loader_batches(loader, max_images):
    for i, data in enumerate(loader):
        if max_images and i >= max_images:
            return
        yield data


def class_signal(x: Tensor, labels: Tensor, ignore: int = 255) -> float:
    """The std over the classes present of the class-mean value of the normalised
    image ``x`` (1, C, H, W) with ``labels`` (H, W), averaged over channels: the class
    signal the noise competes with."""
    means = []
    for c in labels.unique():
        if int(c) == ignore:
            continue
        mask = labels == c
        means.append(torch.stack([x[0, k][mask].mean() for k in range(x.shape[1])]))
    if len(means) < 2:
        return float('nan')
    return float(torch.stack(means).std(dim=0).mean())


def class_hits(pred: Tensor, labels: Tensor, num_classes: int,
               ignore: int = 255) -> np.ndarray:
    """(2, num_classes): per class c, the pixels labelled c that ``pred`` gets right
    and all pixels labelled c (``ignore`` and labels >= num_classes left out), from
    mmseg's ``IoUMetric.intersect_and_union`` as the other analysis tools count;
    summed over images, their ratio is the class's recall."""
    hit, _, _, total = IoUMetric.intersect_and_union(pred, labels, num_classes, ignore)
    return torch.stack([hit, total]).numpy().astype(np.float64)


@torch.no_grad()
def run_t_buckets(args) -> int:
    cfg, model, plugin = load(args.config, args.checkpoint, args.cfg_options)
    deg = plugin.degradation
    student = model.student
    loaders = {'target': cfg.test_dataloader}
    for name, item in ((cfg.get('test_cfg') or {}).get('extra') or {}).items():
        loaders[name] = item['dataloader']
    gen = torch.Generator().manual_seed(0)
    rows, signal = [], {}
    for domain, loader_cfg in loaders.items():
        loader = _image_loader(loader_cfg)
        classes = tuple(loader.dataset.metainfo['classes'])
        num_classes = len(classes)
        sums = {t: dict(ce=0.0, wce=0.0, w=0.0, agree=0.0, acc=0.0, pl_acc=0.0, n=0.0)
                for t in T_GRID}
        # per class: right / all pixels of each label class (recall), and on target
        # the same against the pseudo labels (what L_D's target term asks for)
        hits = {t: np.zeros((2, num_classes)) for t in T_GRID}
        pl_hits = {t: np.zeros((2, num_classes)) for t in T_GRID}
        sig = []
        for data in _loader_batches(loader, args.max_images):
            batch = student.data_preprocessor(data, False)
            x0 = batch['inputs']
            gt = batch['data_samples'][0].gt_sem_seg.data.to(x0.device)  # (1, H, W)
            sig.append(class_signal(x0, gt[0]))
            eps = torch.randn(x0.shape, generator=gen)
            # the teacher's pseudo labels and weight, as training computes them
            pseudo, weight = model.pseudo_label(x0, batch['data_samples'])
            q = weight.flatten()[0]
            valid = gt[0] != 255
            for t in T_GRID:
                tt = torch.tensor([t])
                x_t, _ = deg(x0, tt, noise=eps)
                _, logits = plugin.segment_degraded(student, x_t, tt)
                logits = F.interpolate(logits, size=x0.shape[-2:], mode='bilinear',
                                       align_corners=False)
                pred = logits.argmax(1)
                s = sums[t]
                hits[t] += class_hits(pred, gt, num_classes)
                if domain == 'target':
                    pl_hits[t] += class_hits(pred, pseudo, num_classes)
                    ce = F.cross_entropy(logits, pseudo, reduction='none')
                    s['wce'] += float((ce * q).mean())
                    s['agree'] += float((pred == pseudo).float().mean())
                    s['pl_acc'] += float((pseudo[0][valid] == gt[0][valid]).float()
                                         .mean())
                    s['w'] += float(q)
                ce = F.cross_entropy(logits, torch.where(gt == 255, -100, gt).long(),
                                     ignore_index=-100)
                s['ce'] += float(ce)
                s['acc'] += float((pred[0][valid] == gt[0][valid]).float().mean())
                s['n'] += 1
        signal[domain] = float(np.nanmean(sig))
        for t in T_GRID:
            s = sums[t]
            n = max(s['n'], 1)
            row = dict(domain=domain, t=t, abar=float(deg.abar[t]),
                       ce_gt=s['ce'] / n, acc_gt=s['acc'] / n)
            row.update(_recalls('recall', hits[t], classes))
            if domain == 'target':
                row.update(ld_tgt=s['wce'] / n, agree_pseudo=s['agree'] / n,
                           pseudo_acc=s['pl_acc'] / n, q=s['w'] / n,
                           **_recalls('agree', pl_hits[t], classes))
            rows.append(row)
    os.makedirs(args.out, exist_ok=True)
    # the source row's columns in their order, then the target-only ones by name (a
    # set's order is not stable across runs)
    keys = sorted({k for r in rows for k in r},
                  key=lambda k: (list(rows[-1]).index(k) if k in rows[-1] else
                                 len(rows[-1]), k))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(osp.join(args.out, 't_buckets.csv'), 'w') as f:
        f.write(buf.getvalue())
    abar = deg.abar.cpu().numpy()
    for domain, sig in signal.items():
        below = np.flatnonzero(np.sqrt(abar) * sig < np.sqrt(1 - abar))
        first = int(below[0]) if len(below) else None
        print(f'[readings] {domain}: class signal {sig:.3f} (normalised units); the '
              f'noise std exceeds it from t = {first}')
    print('| domain | t | abar | CE (labels) | acc (labels) | L_D tgt (pseudo, x q) '
          '| agreement with pseudo | pseudo-label acc |')
    print('|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['domain']} | {r['t']} | {r['abar']:.3f} | {r['ce_gt']:.3f} | "
              f"{r['acc_gt']:.3f} | {r.get('ld_tgt', float('nan')):.3f} | "
              f"{r.get('agree_pseudo', float('nan')):.3f} | "
              f"{r.get('pseudo_acc', float('nan')):.3f} |")
    print('\nPer class: recall against the labels (target: the labels training never '
          'sees)')
    present = [c for c in classes
               if any(not np.isnan(r['recall.' + c]) for r in rows)]
    print('| domain | t | ' + ' | '.join(present) + ' |')
    print('|---|---|' + '---|' * len(present))
    for r in rows:
        print(f"| {r['domain']} | {r['t']} | " + ' | '.join(
            f"{r['recall.' + c]:.3f}" for c in present) + ' |')
    return 0


def _recalls(prefix: str, hits: np.ndarray, classes) -> Dict[str, float]:
    """{'<prefix>.<class>': right / all pixels of the class} (nan where absent)."""
    with np.errstate(invalid='ignore', divide='ignore'):
        ratio = hits[0] / hits[1]
    return {f'{prefix}.{c}': float(v) for c, v in zip(classes, ratio)}


# --------------------------------------------------------------------- bn-stats
@torch.no_grad()
def run_bn_stats(args) -> int:
    cfg, model, plugin = load(args.config, args.checkpoint, args.cfg_options)
    student = model.student
    student.train()
    # the two forwards compared below differ in their statistics only: no dropout
    # or drop path, and the same random draws (an HRDA crop) in each
    disable_stochastic_layers(student)
    layers = {n: m for n, m in student.named_modules() if isinstance(m, _BatchNorm)}
    if not layers:
        print('[readings] the student has no BatchNorm layer: joint and per-domain '
              'statistics are the same')
        return 0
    loader = Runner.build_dataloader(dict(cfg.train_dataloader, num_workers=0,
                                          persistent_workers=False))
    stats = {n: dict(dmean=[], var_ratio=[]) for n in layers}
    losses = dict(joint=dict(src=[], tgt=[]), per_domain=dict(src=[], tgt=[]))
    for b, data in enumerate(loader):
        if b >= args.batches:
            break
        ctx = model.step_context(data)
        ctx = model.with_pseudo_labels(ctx)
        deg = plugin.degradation.degrade_pair(ctx.src_inputs, ctx.tgt_inputs)
        n = ctx.src_inputs.shape[0]
        captured = {}

        def hook(name):
            def fn(module, inputs, output):
                x = inputs[0].float()
                dims = [0] + list(range(2, x.dim()))
                a, c = x[:n], x[n:]
                mean_a, mean_c = a.mean(dims), c.mean(dims)
                var_j = x.var(dims, unbiased=False).clamp(min=1e-12)
                captured[name] = (float(((mean_a - mean_c).abs() / var_j.sqrt()).mean()),
                                  float((a.var(dims, unbiased=False).clamp(min=1e-12)
                                         / c.var(dims, unbiased=False).clamp(min=1e-12))
                                        .log().abs().exp().mean()))
            return fn
        handles = [m.register_forward_hook(hook(name)) for name, m in layers.items()]
        labels = torch.cat([ctx.src_labels.long(), ctx.pseudo_label.long()])
        try:
            with preserved_norm_buffers(student), torch.random.fork_rng():
                torch.manual_seed(b)
                out = plugin.degraded_forward(student, deg['x_t'], deg['t'])
        finally:
            for h in handles:
                h.remove()
        for name, (dm, vr) in captured.items():
            stats[name]['dmean'].append(dm)
            stats[name]['var_ratio'].append(vr)
        for norm, scope in (('joint', None), ('per_domain', (n, n))):
            with preserved_norm_buffers(student), torch.random.fork_rng():
                torch.manual_seed(b)
                if scope is None:
                    o = out
                else:
                    with per_part_batch_norm(student, scope):
                        o = plugin.degraded_forward(student, deg['x_t'], deg['t'])
            seg = as_uda_segmentor(student)
            w = plugin.target_weight(ctx)
            ls = seg.uda_loss(o.select(slice(0, n)), labels[:n], None)
            lt = seg.uda_loss(o.select(slice(n, 2 * n)), labels[n:], w)
            losses[norm]['src'].append(float(sum(v.mean() for k, v in ls.items()
                                                 if is_loss_key(k))))
            losses[norm]['tgt'].append(float(sum(v.mean() for k, v in lt.items()
                                                 if is_loss_key(k))))
    result = dict(
        layers={n: dict(std_mean_difference=float(np.mean(s['dmean'])),
                        variance_ratio=float(np.mean(s['var_ratio'])))
                for n, s in stats.items()},
        losses={k: {d: float(np.mean(v)) for d, v in x.items()}
                for k, x in losses.items()})
    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(osp.join(args.out, 'bn_stats.json'),
                      json.dumps(result, indent=1) + '\n')
    print('| BatchNorm layer | |mean_src - mean_tgt| / std_joint | var ratio (>= 1) |')
    print('|---|---|---|')
    for name, r in result['layers'].items():
        print(f"| {name} | {r['std_mean_difference']:.3f} | {r['variance_ratio']:.2f} |")
    print('| statistics | L_D source (CE) | L_D target (CE x q) |')
    print('|---|---|---|')
    for k, v in result['losses'].items():
        print(f"| {k} | {v['src']:.4f} | {v['tgt']:.4f} |")
    return 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Diagnostics of DiDA's open readings.")
    sub = p.add_subparsers(dest='command', required=True)
    g = sub.add_parser('gradients', help='gradient norms into g and its update size')
    g.add_argument('config')
    g.add_argument('--iters', type=int, default=500)
    g.add_argument('--every', type=int, default=10)
    for name in ('t-buckets', 'bn-stats'):
        s = sub.add_parser(name)
        s.add_argument('config')
        s.add_argument('checkpoint')
    sub.choices['t-buckets'].add_argument('--max-images', type=int, default=0)
    sub.choices['bn-stats'].add_argument('--batches', type=int, default=8)
    for s in sub.choices.values():
        s.add_argument('--out', default='work_dirs/dida_readings')
        s.add_argument('--cfg-options', nargs='+', action=DictAction, default=None)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    run = dict(gradients=run_gradients, **{'t-buckets': run_t_buckets,
                                           'bn-stats': run_bn_stats})[args.command]
    return run(args)


if __name__ == '__main__':
    sys.exit(main())

"""The bridge curve: where do the degraded domains meet?

Evaluates a trained model on degraded source val and target val images at
t = 0, 10, ..., 90 (DiDA's forward process, Eq. 1; the same eps per image at every t,
seeded, so two models see the same degraded images) and writes

* ``<out>/bridge_curve.csv``: per t, abar_t, the mIoU of the degraded path on each
  domain (h o (g + g') at t for a DiDA model, h o g for a baseline), and measures of
  the domain gap of the degraded path's features (what h reads): the cross-validated
  accuracy of a linear source-vs-target probe (0.5 = indistinguishable, 1 =
  separable) on pixel features (all levels at the finest level's resolution,
  ``--pixels`` random positions per image, folds split by image) and on image
  features (every level average-pooled), and the squared MMD of the pixel features
  (RBF kernel, median bandwidth);
* ``<out>/bridge_curve.png``: the curves (and, with ``--reference``, another
  model's, dashed: e.g. DAFormer + DiDA against DAFormer).

Usage::

    python tools/analysis/bridge_curve.py CONFIG CHECKPOINT [--out DIR]
        [--timesteps 0 10 ... 90] [--max-images N] [--seed 0] [--device cpu]
        [--reference OTHER/bridge_curve.csv --labels DiDA DAFormer]

CONFIG is the training config (UDA or plain segmentor) of CHECKPOINT. The domains are
the config's test set (``test_dataloader``, "target" for the procedural and UDA
configs) and the extra test sets of a multi-dataset test loop (``test_cfg.extra``,
e.g. "source"). A model without DiDA is degraded with DiDA's default degradation.
"""
import argparse
import csv
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner import Runner
from mmseg.evaluation import IoUMetric
from tqdm import tqdm

import mmseg_dida  # noqa: F401  (compat + registration)
from mmseg_dida.models.uda.dida import DiDA
from mmseg_dida.models.utils.degradation import Degradation
from mmseg_dida.utils.checkpoint import (
    atomic_write,
    build_model_from_checkpoint,
)

DEFAULT_TIMESTEPS = tuple(range(0, 100, 10))


# --------------------------------------------------------------- domain gap
def linear_probe_accuracy(a: np.ndarray, b: np.ndarray, folds: int = 5,
                          weight_decay: float = 1e-2, seed: int = 0,
                          groups_a: Optional[np.ndarray] = None,
                          groups_b: Optional[np.ndarray] = None) -> float:
    """Cross-validated accuracy of a logistic-regression probe telling rows of ``a``
    from rows of ``b`` (features standardised on each training fold; the larger set
    subsampled to the smaller, so chance is 0.5). Rows with the same group id (e.g.
    pixels of one image) stay in the same fold."""
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    if n < 2:
        raise ValueError(f'linear_probe_accuracy: need >= 2 samples per domain, got '
                         f'{len(a)} and {len(b)}')
    ia, ib = rng.permutation(len(a))[:n], rng.permutation(len(b))[:n]
    ga = np.arange(len(a)) if groups_a is None else np.asarray(groups_a)
    gb = np.arange(len(b)) if groups_b is None else np.asarray(groups_b)
    x = np.concatenate([a[ia], b[ib]]).astype(np.float64)
    y = np.concatenate([np.zeros(n), np.ones(n)])
    # fold of a row: a random permutation of its domain's group ids, modulo folds
    fold = np.concatenate([_group_folds(ga[ia], folds, rng),
                           _group_folds(gb[ib], folds, rng)])
    if len(np.unique(fold)) < 2:
        raise ValueError('linear_probe_accuracy: need >= 2 groups per domain')
    correct = tested = 0
    for k in np.unique(fold):
        test = fold == k
        mu, sd = x[~test].mean(0), x[~test].std(0) + 1e-8
        xtr = torch.as_tensor((x[~test] - mu) / sd)
        xte = torch.as_tensor((x[test] - mu) / sd)
        ytr = torch.as_tensor(y[~test])
        w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, bias], max_iter=200, line_search_fn='strong_wolfe')

        def closure():
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(xtr @ w + bias, ytr) + \
                weight_decay * w.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            pred = (xte @ w + bias > 0).double().numpy()
        correct += int((pred == y[test]).sum())
        tested += int(test.sum())
    return correct / tested


def _group_folds(groups: np.ndarray, folds: int, rng) -> np.ndarray:
    ids, inverse = np.unique(groups, return_inverse=True)
    return rng.permutation(len(ids))[inverse] % folds


def mmd2_rbf(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased squared maximum mean discrepancy between the rows of ``a`` and ``b``
    with an RBF kernel whose bandwidth is the median pairwise distance."""
    x = torch.as_tensor(np.concatenate([a, b]), dtype=torch.float64)
    d2 = torch.cdist(x, x).pow(2)
    off = d2[~torch.eye(len(x), dtype=torch.bool)]
    bandwidth = off.median().clamp_min(1e-12)
    k = torch.exp(-d2 / bandwidth)
    m, n = len(a), len(b)
    kaa, kbb, kab = k[:m, :m], k[m:, m:], k[:m, m:]
    return float((kaa.sum() - kaa.trace()) / (m * (m - 1)) +
                 (kbb.sum() - kbb.trace()) / (n * (n - 1)) - 2 * kab.mean())


# --------------------------------------------------------------- the model
def load_model(cfg: Config, checkpoint: str, device: str):
    """The trained model of ``cfg`` (a UDA model or a plain segmentor) with the
    checkpoint's weights, in eval mode; its segmentor; its DiDA plug-in or None."""
    model, _ = build_model_from_checkpoint(cfg, checkpoint, strict=True)
    model.to(device).eval()
    plugin = next((p for p in getattr(model, 'plugins', []) if isinstance(p, DiDA)),
                  None)
    return model, getattr(model, 'student', model), plugin


def domain_loaders(cfg: Config) -> Dict[str, object]:
    """name -> test dataloader config: the primary test set ('target' when the test
    loop has extra sets, else 'test') and every extra set of a multi-dataset loop."""
    extra = (cfg.get('test_cfg') or {}).get('extra') or {}
    loaders = {'target' if extra else 'test': cfg.test_dataloader}
    for name, item in extra.items():
        loaders[name] = item['dataloader']
    return loaders


@torch.no_grad()
def degraded_pass(segmentor, plugin, x_t: torch.Tensor, t: torch.Tensor
                  ) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """Features and logits of the degraded path: DiDA's (fused features, its
    segmentation path) or, for a baseline, h o g."""
    if plugin is not None:
        feats, logits = plugin.segment_degraded(segmentor, x_t, t)
    else:
        feats = segmentor.extract_feat(x_t)
        logits = segmentor.decode_head(feats)
    return list(feats), logits


def pooled(feats: Sequence[torch.Tensor]) -> np.ndarray:
    """Global average pool of every level, concatenated: (N, sum C)."""
    return torch.cat([f.float().mean(dim=(2, 3)) for f in feats], dim=1).cpu().numpy()


def pixel_features(feats: Sequence[torch.Tensor], positions: torch.Tensor
                   ) -> np.ndarray:
    """Every level bilinearly resized to the finest level and concatenated, read at
    ``positions`` (N, k) (flat indices into the finest level): (N * k, sum C)."""
    size = feats[0].shape[-2:]
    x = torch.cat([f.float() if f.shape[-2:] == size else F.interpolate(
        f.float(), size=size, mode='bilinear', align_corners=False) for f in feats], 1)
    n, c = x.shape[:2]
    idx = positions.to(x.device).view(n, 1, -1).expand(n, c, -1)
    return x.flatten(2).gather(2, idx).permute(0, 2, 1).reshape(-1, c).cpu().numpy()


@torch.no_grad()
def evaluate(cfg: Config, checkpoint: str, timesteps: Sequence[int],
             max_images: int = 0, seed: int = 0, device: str = 'cpu',
             pixels: int = 16) -> List[dict]:
    """One row per t: abar_t, mIoU per domain and, with two domains or more, the
    probe accuracies and MMD^2 between the first two."""
    model, segmentor, plugin = load_model(cfg, checkpoint, device)
    degradation = plugin.degradation if plugin is not None else Degradation()
    degradation.to(device)
    num_classes = segmentor.decode_head.num_classes
    ignore = getattr(segmentor.decode_head, 'ignore_index', 255)
    areas = {}  # (domain, t) -> 4 area tensors
    features = {}  # (domain, t) -> lists of pooled / pixel arrays and pixel groups
    loaders = domain_loaders(cfg)
    for domain, loader_cfg in loaders.items():
        loader = Runner.build_dataloader(loader_cfg)
        seen = 0
        total = len(loader.dataset) if not max_images else min(max_images,
                                                               len(loader.dataset))
        bar = tqdm(total=total * len(timesteps), desc=f'bridge curve: {domain}',
                   unit='img', file=sys.stdout, mininterval=2.0)
        for batch in loader:
            if max_images and seen >= max_images:
                break
            data = segmentor.data_preprocessor(batch, False)
            x0 = data['inputs'].to(device)
            samples = data['data_samples']
            if max_images:
                keep = max_images - seen
                x0, samples = x0[:keep], samples[:keep]
            n = x0.shape[0]
            noise = _noise(degradation, x0, seed, seen)
            for t_value in timesteps:
                t = torch.full((n, ), int(t_value), dtype=torch.long, device=device)
                x_t, _ = degradation(x0, t, noise=noise)
                feats, logits = degraded_pass(segmentor, plugin, x_t, t)
                logits = F.interpolate(logits, size=x0.shape[-2:], mode='bilinear',
                                       align_corners=False)
                preds = segmentor.postprocess_result(logits, samples)
                for sample in preds:
                    label = sample.gt_sem_seg.data.squeeze().to(device)
                    pred = sample.pred_sem_seg.data.squeeze()
                    res = IoUMetric.intersect_and_union(pred, label, num_classes,
                                                        ignore)
                    acc = areas.setdefault((domain, t_value), [0, 0, 0, 0])
                    for i, r in enumerate(res):
                        acc[i] = acc[i] + r.cpu()
                store = features.setdefault((domain, t_value), ([], [], []))
                store[0].append(pooled(feats))
                pos = _positions(feats[0], seed, seen, pixels)
                store[1].append(pixel_features(feats, pos))
                store[2].append(np.repeat(np.arange(seen, seen + n), pixels))
                bar.update(n)
            seen += n
        bar.close()
    names = list(loaders)
    rows = []
    for t_value in timesteps:
        row = dict(t=int(t_value), abar=float(degradation.abar[int(t_value)]))
        for domain in names:
            inter, union, _, label = areas[(domain, t_value)]
            iou = inter.double() / union.double()
            row[f'{domain}_mIoU'] = float(np.nanmean(
                iou[label > 0].numpy()) * 100)
        if len(names) >= 2:
            a, b = ([np.concatenate(part) for part in features[(name, t_value)]]
                    for name in (names[1], names[0]))
            row['probe_acc_pixel'] = linear_probe_accuracy(
                a[1], b[1], seed=seed, groups_a=a[2], groups_b=b[2])
            row['probe_acc_image'] = linear_probe_accuracy(a[0], b[0], seed=seed)
            rng = np.random.default_rng(seed)
            m = min(1000, len(a[1]), len(b[1]))
            row['mmd2_pixel'] = mmd2_rbf(a[1][rng.permutation(len(a[1]))[:m]],
                                         b[1][rng.permutation(len(b[1]))[:m]])
        rows.append(row)
    return rows


def _positions(feat: torch.Tensor, seed: int, first_index: int, k: int
               ) -> torch.Tensor:
    """``k`` flat positions per image in the finest level, seeded by the image's
    index (the same at every t and for every model): (N, k)."""
    n, hw = feat.shape[0], feat.shape[-2] * feat.shape[-1]
    out = [torch.randperm(hw, generator=torch.Generator().manual_seed(
        seed * 1_000_003 + first_index + i))[:k] for i in range(n)]
    return torch.stack(out)


def _noise(degradation: Degradation, x0: torch.Tensor, seed: int,
           first_index: int) -> torch.Tensor:
    """eps of each image at the degradation's noise resolution, from a generator
    seeded by (seed, the image's index in its dataset): the same at every t and for
    every model."""
    n, c, h, w = x0.shape
    s = degradation.noise_downsample
    out = []
    for i in range(n):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + first_index + i)
        out.append(torch.randn((c, h // s, w // s), generator=gen))
    return torch.stack(out).to(x0)


# --------------------------------------------------------------- output
def _atomic(path: str, write) -> None:
    """``write(f)`` into a binary file that replaces ``path`` only when complete."""
    with atomic_write(path, 'wb') as f:
        write(f)


def write_csv(rows: List[dict], path: str) -> None:
    def write(f):
        import io
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f'{v:.4f}' if isinstance(v, float) else v)
                             for k, v in row.items()})
        f.write(text.getvalue().encode())
    _atomic(path, write)


def read_csv(path: str) -> List[dict]:
    """Rows of a bridge_curve.csv (numbers as float, t as int)."""
    with open(path) as f:
        return [{k: (int(v) if k == 't' else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)]


def plot(rows: List[dict], path: str, title: str,
         reference: Optional[List[dict]] = None, labels: Sequence[str] = ('', '')
         ) -> None:
    """The curves of ``rows`` (solid) and, when given, of ``reference`` (dashed, e.g.
    the baseline's CSV); ``labels`` name the two in the legends."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for curves, style, label in ((rows, '-', labels[0]), (reference, '--', labels[1])):
        if not curves:
            continue
        t = [r['t'] for r in curves]
        tag = f' {label}' if label else ''
        for i, key in enumerate(k for k in curves[0] if k.endswith('_mIoU')):
            axes[0].plot(t, [r[key] for r in curves], style, marker='o', color=f'C{i}',
                         label=key[:-5] + tag)
        if 'probe_acc_pixel' in curves[0]:
            axes[1].plot(t, [r['probe_acc_pixel'] for r in curves], style, marker='o',
                         color='C3', label='probe, pixels' + tag)
            axes[1].plot(t, [r['probe_acc_image'] for r in curves], style, marker='^',
                         color='C1', label='probe, images' + tag)
    axes[0].set(xlabel='t', ylabel='mIoU of the degraded path (%)',
                title='segmentation along the bridge')
    axes[0].legend(fontsize=8)
    axes[1].axhline(0.5, color='grey', lw=0.8, ls=':')
    axes[1].set(xlabel='t', ylabel='source-vs-target probe accuracy',
                ylim=(0.4, 1.02), title='domain gap of the features h reads')
    axes[1].legend(fontsize=8, loc='lower left')
    fig.suptitle(title)
    fig.tight_layout()
    _atomic(path, lambda f: fig.savefig(f, format='png', dpi=100))
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--out', default=None,
                   help='output folder (default: <checkpoint folder>/bridge_curve)')
    p.add_argument('--timesteps', type=int, nargs='+', default=list(DEFAULT_TIMESTEPS))
    p.add_argument('--max-images', type=int, default=0,
                   help='images per domain (0: all)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--pixels', type=int, default=16,
                   help='feature positions per image for the pixel-level gap')
    p.add_argument('--device', default='cpu')
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE')
    p.add_argument('--reference', default=None, metavar='CSV',
                   help="another model's bridge_curve.csv, drawn dashed (e.g. the "
                        'baseline of a DiDA model)')
    p.add_argument('--labels', nargs=2, default=('', ''), metavar=('THIS', 'REFERENCE'),
                   help='legend names of this model and of --reference')
    args = p.parse_args(argv)
    for path in (args.config, args.checkpoint):
        if not osp.isfile(path):
            print(f"error: '{path}' does not exist", file=sys.stderr)
            return 2
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        from mmengine.config import DictAction
        parser = argparse.ArgumentParser()
        parser.add_argument('--o', nargs='+', action=DictAction)
        cfg.merge_from_dict(parser.parse_args(['--o'] + args.cfg_options).o)
    rows = evaluate(cfg, args.checkpoint, args.timesteps, args.max_images,
                    args.seed, args.device, args.pixels)
    out = args.out or osp.join(osp.dirname(osp.abspath(args.checkpoint)),
                               'bridge_curve')
    os.makedirs(out, exist_ok=True)
    write_csv(rows, osp.join(out, 'bridge_curve.csv'))
    reference = read_csv(args.reference) if args.reference else None
    plot(rows, osp.join(out, 'bridge_curve.png'),
         f'{osp.basename(args.config)} ({osp.basename(args.checkpoint)})',
         reference, args.labels)
    keys = list(rows[0])
    print(' '.join(f'{k:>12}' for k in keys))
    for row in rows:
        print(' '.join(f'{row[k]:>12.4f}' if isinstance(row[k], float)
                       else f'{row[k]:>12}' for k in keys))
    print(f'wrote {out}/bridge_curve.csv and bridge_curve.png')
    return 0


if __name__ == '__main__':
    sys.exit(main())

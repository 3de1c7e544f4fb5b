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
  (RBF kernel, median bandwidth); then (later columns, measures that do not saturate
  where the probe does; see "domain gap" below) the pixel probe trained on
  ``--probe-images`` images per domain and tested on the others
  (``probe_acc_pixel_few``), the class-conditional MMD^2 (per class of the gt at the
  sampled positions, averaged over classes; the kernel of ``mmd2_pixel``:
  ``cmmd2_pixel``) and the balanced accuracy of a linear class readout trained on
  source pixels only, on held-out source images and on the target
  (``readout_acc_source``, ``readout_acc_target``);
* ``<out>/bridge_curve.png``: the curves (and, with ``--reference``, another
  model's, dashed: e.g. DAFormer + DiDA against DAFormer).

Usage::

    python tools/analysis/bridge_curve.py CONFIG CHECKPOINT [--out DIR]
        [--timesteps 0 10 ... 90] [--max-images N] [--seed 0] [--device cpu]
        [--pixels 16] [--probe-images 4]
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
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmseg.evaluation import IoUMetric

import mmseg_dida  # noqa: F401  (compat + registration)
from mmseg_dida.apis.degraded_eval import (
    degraded_batches,
    degraded_pass,
    domain_loaders,
    load_model,
)
from mmseg_dida.models.utils.degradation import Degradation
from mmseg_dida.utils.atomic_files import atomic_write

DEFAULT_TIMESTEPS = tuple(range(0, 100, 10))


# --------------------------------------------------------------- domain gap
# Four views of the gap between the domains' features, from saturating to not:
# * linear_probe_accuracy: can a linear probe tell the domains apart? With hundreds of
#   feature dimensions and thousands of pixels it finds any difference at all (0.97-1.00
#   for every model at every t on the benchmark), so it says little about transfer.
# * few_image_probe_accuracy: the same probe trained on a few images per domain: only a
#   difference that is consistent across images and large against the images' own
#   variation survives, so it stays below 1 where the full probe saturates.
# * class_mmd2_rbf: MMD^2 per semantic class (pixels of class c in one domain against
#   those of class c in the other), averaged over classes: how far each class moved,
#   blind to how often each class occurs (mmd2_rbf over all pixels also counts a
#   label-distribution difference as a gap).
# * source_readout_accuracy: a linear readout of the class trained on source pixels
#   only, scored on held-out source images and on the target: the part of the gap that
#   matters to a source-trained head (what h is); a domain difference the readout does
#   not use costs nothing there.
def _standardise(train: np.ndarray, *others: np.ndarray) -> List[torch.Tensor]:
    """``train`` and ``others`` scaled by the mean and std of ``train`` (float64)."""
    mu, sd = train.mean(0), train.std(0) + 1e-8
    return [torch.as_tensor((x - mu) / sd) for x in (train, ) + others]


def _fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int,
                weight_decay: float):
    """An L2-regularised linear classifier of ``y`` on ``x`` fitted by L-BFGS: logistic
    regression (one logit) for two classes, softmax regression for more. Returns the
    function from rows to predicted labels (long)."""
    outputs = () if num_classes == 2 else (num_classes, )
    w = torch.zeros((x.shape[1], ) + outputs, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(outputs, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], max_iter=200, line_search_fn='strong_wolfe')
    if num_classes == 2:
        def data_loss(logits):
            return F.binary_cross_entropy_with_logits(logits, y.double())
    else:
        def data_loss(logits):
            return F.cross_entropy(logits, y.long())

    def closure():
        opt.zero_grad()
        loss = data_loss(x @ w + bias) + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)

    @torch.no_grad()
    def predict(rows: torch.Tensor) -> torch.Tensor:
        logits = rows @ w + bias
        return (logits > 0).long() if num_classes == 2 else logits.argmax(1)
    return predict


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
        xtr, xte = _standardise(x[~test], x[test])
        predict = _fit_linear(xtr, torch.as_tensor(y[~test]), 2, weight_decay)
        correct += int((predict(xte).numpy() == y[test]).sum())
        tested += int(test.sum())
    return correct / tested


def _group_folds(groups: np.ndarray, folds: int, rng) -> np.ndarray:
    ids, inverse = np.unique(groups, return_inverse=True)
    return rng.permutation(len(ids))[inverse] % folds


def few_image_probe_accuracy(a: np.ndarray, b: np.ndarray, groups_a: np.ndarray,
                             groups_b: np.ndarray, images: int = 4, draws: int = 10,
                             weight_decay: float = 1e-2, seed: int = 0) -> float:
    """The source-vs-target probe of :func:`linear_probe_accuracy` trained on the rows
    of ``images`` groups (images) per domain only and tested on the rows of all other
    groups, averaged over ``draws`` random choices of the training images (train and
    test rows balanced between the domains: chance is 0.5). Data-limited, it does not
    reach 1 for a difference that a probe on every image finds but that is small
    against the variation between images."""
    ga, gb = np.asarray(groups_a), np.asarray(groups_b)
    ids_a, ids_b = np.unique(ga), np.unique(gb)
    if min(len(ids_a), len(ids_b)) <= images:
        raise ValueError(f'few_image_probe_accuracy: need > {images} images per '
                         f'domain, got {len(ids_a)} and {len(ids_b)}')
    rng = np.random.default_rng(seed)

    def balanced(rows_a, rows_b):
        n = min(len(rows_a), len(rows_b))
        return rng.permutation(rows_a)[:n], rng.permutation(rows_b)[:n]

    accuracies = []
    for _ in range(draws):
        train_a = np.isin(ga, rng.choice(ids_a, images, replace=False))
        train_b = np.isin(gb, rng.choice(ids_b, images, replace=False))
        ra, rb = balanced(np.flatnonzero(train_a), np.flatnonzero(train_b))
        ta, tb = balanced(np.flatnonzero(~train_a), np.flatnonzero(~train_b))
        x = np.concatenate([a[ra], b[rb]]).astype(np.float64)
        y = torch.cat([torch.zeros(len(ra)), torch.ones(len(rb))])
        xtr, xa, xb = _standardise(x, a[ta].astype(np.float64),
                                   b[tb].astype(np.float64))
        predict = _fit_linear(xtr, y, 2, weight_decay)
        correct = int((predict(xa) == 0).sum()) + int((predict(xb) == 1).sum())
        accuracies.append(correct / (len(ta) + len(tb)))
    return float(np.mean(accuracies))


def median_sq_distance(x: np.ndarray) -> float:
    """The median squared distance between distinct rows of ``x``: the RBF bandwidth
    of :func:`mmd2_rbf` on ``x`` = both samples stacked."""
    x = torch.as_tensor(x, dtype=torch.float64)
    d2 = torch.cdist(x, x).pow(2)
    return float(d2[~torch.eye(len(x), dtype=torch.bool)].median().clamp_min(1e-12))


def mmd2_rbf(a: np.ndarray, b: np.ndarray, bandwidth: Optional[float] = None
             ) -> float:
    """Unbiased squared maximum mean discrepancy between the rows of ``a`` and ``b``
    with the RBF kernel exp(-|x - y|^2 / bandwidth); by default the bandwidth is the
    median squared pairwise distance of the stacked rows."""
    x = torch.as_tensor(np.concatenate([a, b]), dtype=torch.float64)
    d2 = torch.cdist(x, x).pow(2)
    if bandwidth is None:
        off = d2[~torch.eye(len(x), dtype=torch.bool)]
        bandwidth = off.median().clamp_min(1e-12)
    k = torch.exp(-d2 / bandwidth)
    m, n = len(a), len(b)
    kaa, kbb, kab = k[:m, :m], k[m:, m:], k[:m, m:]
    return float((kaa.sum() - kaa.trace()) / (m * (m - 1)) +
                 (kbb.sum() - kbb.trace()) / (n * (n - 1)) - 2 * kab.mean())


def shared_classes(labels_a: np.ndarray, labels_b: np.ndarray,
                   min_count: int = 10) -> np.ndarray:
    """The labels with at least ``min_count`` rows in each domain, sorted."""
    ca, na = np.unique(labels_a, return_counts=True)
    cb, nb = np.unique(labels_b, return_counts=True)
    return np.intersect1d(ca[na >= min_count], cb[nb >= min_count])


def class_mmd2_rbf(a: np.ndarray, b: np.ndarray, labels_a: np.ndarray,
                   labels_b: np.ndarray, bandwidth: Optional[float] = None,
                   min_count: int = 10, max_count: int = 300, seed: int = 0) -> float:
    """Class-conditional MMD^2: the mean over the classes with at least ``min_count``
    rows in each domain of :func:`mmd2_rbf` between the rows of that class in ``a`` and
    in ``b`` (at most ``max_count`` of each, drawn at random), every class with one
    kernel: ``bandwidth``, by default the median squared distance of at most 1000 rows
    of each domain stacked (the kernel of :func:`mmd2_rbf` on all rows). Classes count
    equally, so how often each occurs in either domain does not enter. NaN when no
    class qualifies."""
    rng = np.random.default_rng(seed)
    if bandwidth is None:
        m = min(1000, len(a), len(b))
        bandwidth = median_sq_distance(np.concatenate(
            [a[rng.permutation(len(a))[:m]], b[rng.permutation(len(b))[:m]]]))
    values = []
    for c in shared_classes(labels_a, labels_b, min_count):
        ra = rng.permutation(np.flatnonzero(labels_a == c))[:max_count]
        rb = rng.permutation(np.flatnonzero(labels_b == c))[:max_count]
        values.append(mmd2_rbf(a[ra], b[rb], bandwidth))
    return float(np.mean(values)) if values else float('nan')


def source_readout_accuracy(a: np.ndarray, b: np.ndarray, labels_a: np.ndarray,
                            labels_b: np.ndarray, groups_a: np.ndarray,
                            folds: int = 5, min_count: int = 10,
                            weight_decay: float = 1e-2, seed: int = 0
                            ) -> Tuple[float, float]:
    """Does a readout trained on the source work on the target? A linear softmax
    classifier of the label is trained on rows of ``a`` (source) only, ``folds``
    times, each time without one fold of the source groups (images); returned are its
    balanced accuracies (mean recall over classes; chance 1 / classes) on the held-out
    source rows and on all rows of ``b`` (target). Only the classes with at least
    ``min_count`` rows in each domain take part (other rows are left out). The
    difference of the two is the transfer gap of the features; a domain difference the
    readout does not use costs nothing here, unlike in the domain probe. (NaN, NaN)
    with fewer than two such classes."""
    classes = shared_classes(labels_a, labels_b, min_count)
    if len(classes) < 2:
        return float('nan'), float('nan')
    keep_a, keep_b = np.isin(labels_a, classes), np.isin(labels_b, classes)
    ya = np.searchsorted(classes, labels_a[keep_a])
    yb = np.searchsorted(classes, labels_b[keep_b])
    rng = np.random.default_rng(seed)
    fold = _group_folds(np.asarray(groups_a)[keep_a], folds, rng)
    if len(np.unique(fold)) < 2:
        raise ValueError('source_readout_accuracy: need >= 2 source groups')
    xa, xb = a[keep_a].astype(np.float64), b[keep_b].astype(np.float64)
    k = len(classes)
    confusion = {'source': np.zeros((k, k)), 'target': np.zeros((k, k))}
    for f in np.unique(fold):
        test = fold == f
        xtr, xte, xtarget = _standardise(xa[~test], xa[test], xb)
        predict = _fit_linear(xtr, torch.as_tensor(ya[~test]), k, weight_decay)
        np.add.at(confusion['source'], (ya[test], predict(xte).numpy()), 1)
        np.add.at(confusion['target'], (yb, predict(xtarget).numpy()), 1)

    def balanced_accuracy(c):
        return float(np.mean(np.diag(c) / c.sum(1)))
    return (balanced_accuracy(confusion['source']),
            balanced_accuracy(confusion['target']))


# --------------------------------------------------------------- the model
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


def position_labels(samples: Sequence, positions: torch.Tensor,
                    feature_size: Tuple[int, int], input_size: Tuple[int, int],
                    ignore_index: int = 255) -> np.ndarray:
    """The ground-truth label at each of ``positions`` (N, k) (flat indices into the
    finest level of size ``feature_size``, as for :func:`pixel_features`): the label
    of the gt pixel nearest to the centre of the feature cell, after removing the
    preprocessor's padding of the ``input_size`` batch and scaling the image to its gt;
    ``ignore_index`` in the padding: (N * k,)."""
    (fh, fw), (height, width) = feature_size, input_size
    out = []
    for sample, pos in zip(samples, positions.cpu()):
        gt = sample.gt_sem_seg.data.reshape(sample.gt_sem_seg.data.shape[-2:]).cpu()
        meta = sample.metainfo
        left, right, top, bottom = meta.get('img_padding_size',
                                            meta.get('padding_size', [0] * 4))
        h, w = height - top - bottom, width - left - right
        y = ((pos // fw).double() + 0.5) * height / fh - top
        x = ((pos % fw).double() + 0.5) * width / fw - left
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        gy = (y * gt.shape[0] / h).floor().long().clamp(0, gt.shape[0] - 1)
        gx = (x * gt.shape[1] / w).floor().long().clamp(0, gt.shape[1] - 1)
        labels = gt[gy, gx].long()
        labels[~inside] = ignore_index
        out.append(labels)
    return torch.cat(out).numpy()


@torch.no_grad()
def evaluate(cfg: Config, checkpoint: str, timesteps: Sequence[int],
             max_images: int = 0, seed: int = 0, device: str = 'cpu',
             pixels: int = 16, probe_images: int = 4) -> List[dict]:
    """One row per t: abar_t, mIoU per domain and, with two domains or more, the gap
    measures between the first two (the readout is trained on the second, the first
    extra set: "source"): the probe accuracies, MMD^2, then the few-image probe
    (``probe_images`` images per domain; NaN with fewer images), the class-conditional
    MMD^2 and the source-trained readout's balanced accuracy on both domains."""
    model, segmentor, plugin = load_model(cfg, checkpoint, device)
    degradation = plugin.degradation if plugin is not None else Degradation()
    degradation.to(device)
    num_classes = segmentor.decode_head.num_classes
    ignore = getattr(segmentor.decode_head, 'ignore_index', 255)
    areas = {}  # (domain, t) -> 4 area tensors
    # (domain, t) -> lists of pooled / pixel arrays, pixel groups and pixel labels
    features = {}
    loaders = domain_loaders(cfg)
    for b in degraded_batches(cfg, segmentor, degradation, timesteps, max_images, seed,
                              device, desc='bridge curve'):
        domain, t_value, x0, samples, seen = b.domain, b.step, b.x0, b.samples, \
            b.first_index
        n = x0.shape[0]
        feats, logits = degraded_pass(segmentor, plugin, b.x, b.t)
        logits = F.interpolate(logits, size=x0.shape[-2:], mode='bilinear',
                               align_corners=False)
        preds = segmentor.postprocess_result(logits, samples)
        for sample in preds:
            label = sample.gt_sem_seg.data.squeeze().to(device)
            pred = sample.pred_sem_seg.data.squeeze()
            res = IoUMetric.intersect_and_union(pred, label, num_classes, ignore)
            acc = areas.setdefault((domain, t_value), [0, 0, 0, 0])
            for i, r in enumerate(res):
                acc[i] = acc[i] + r.cpu()
        store = features.setdefault((domain, t_value), ([], [], [], []))
        store[0].append(pooled(feats))
        pos = _positions(feats[0], seed, seen, pixels)
        store[1].append(pixel_features(feats, pos))
        store[2].append(np.repeat(np.arange(seen, seen + n), pixels))
        store[3].append(position_labels(samples, pos, feats[0].shape[-2:],
                                        x0.shape[-2:], ignore))
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
            sub_a = a[1][rng.permutation(len(a[1]))[:m]]
            sub_b = b[1][rng.permutation(len(b[1]))[:m]]
            row['mmd2_pixel'] = mmd2_rbf(sub_a, sub_b)
            bandwidth = median_sq_distance(np.concatenate([sub_a, sub_b]))
            row.update(unsaturated_gap_measures(a, b, probe_images, ignore, seed,
                                                bandwidth))
        rows.append(row)
    return rows


def unsaturated_gap_measures(a: Sequence[np.ndarray], b: Sequence[np.ndarray],
                             probe_images: int, ignore_index: int, seed: int,
                             bandwidth: float) -> dict:
    """The gap measures that do not saturate where the probes do (the bridge curve's
    later columns) between source ``a`` and target ``b``, each (pooled, pixels, pixel
    groups, pixel labels): the few-image probe (NaN without more than
    ``probe_images`` images per domain), the class-conditional MMD^2 with the kernel
    ``bandwidth`` of the pixel MMD^2, and the source-trained readout's balanced
    accuracies; pixels labelled ``ignore_index`` take no part in the last two."""
    few = float('nan')
    if min(len(np.unique(a[2])), len(np.unique(b[2]))) > probe_images:
        few = few_image_probe_accuracy(a[1], b[1], a[2], b[2], probe_images,
                                       seed=seed)
    va, vb = a[3] != ignore_index, b[3] != ignore_index
    readout = source_readout_accuracy(a[1][va], b[1][vb], a[3][va], b[3][vb],
                                      a[2][va], seed=seed)
    return dict(probe_acc_pixel_few=few,
                cmmd2_pixel=class_mmd2_rbf(a[1][va], b[1][vb], a[3][va], b[3][vb],
                                           bandwidth, seed=seed),
                readout_acc_source=readout[0], readout_acc_target=readout[1])


def _positions(feat: torch.Tensor, seed: int, first_index: int, k: int
               ) -> torch.Tensor:
    """``k`` flat positions per image in the finest level, seeded by the image's
    index (the same at every t and for every model): (N, k)."""
    n, hw = feat.shape[0], feat.shape[-2] * feat.shape[-1]
    out = [torch.randperm(hw, generator=torch.Generator().manual_seed(
        seed * 1_000_003 + first_index + i))[:k] for i in range(n)]
    return torch.stack(out)


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


# the panels of the gap measures: title, y label and the curves drawn in it (CSV
# column, marker, colour, name)
GAP_PANELS = (
    ('domain gap of the features h reads', 'source-vs-target probe accuracy', (
        ('probe_acc_pixel', 'o', 'C3', 'probe, pixels'),
        ('probe_acc_image', '^', 'C1', 'probe, images'),
        ('probe_acc_pixel_few', 's', 'C4', 'probe, pixels of few images'))),
    ('does a source-trained readout transfer?',
     'linear class readout: balanced accuracy', (
        ('readout_acc_source', 'o', 'C0', 'readout on source (held out)'),
        ('readout_acc_target', '^', 'C2', 'readout on target'))),
    ('kernel distance of the domains', 'MMD$^2$ of the pixel features', (
        ('mmd2_pixel', 'o', 'C5', 'MMD$^2$'),
        ('cmmd2_pixel', '^', 'C6', 'class-conditional MMD$^2$'))),
)


def plot(rows: List[dict], path: str, title: str,
         reference: Optional[List[dict]] = None, labels: Sequence[str] = ('', '')
         ) -> None:
    """The curves of ``rows`` (solid) and, when given, of ``reference`` (dashed, e.g.
    the baseline's CSV; one written before a measure existed lacks its curve);
    ``labels`` name the two in the legends."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.4))
    axes = axes.ravel()
    for curves, style, label in ((rows, '-', labels[0]), (reference, '--', labels[1])):
        if not curves:
            continue
        t = [r['t'] for r in curves]
        tag = f' {label}' if label else ''
        for i, key in enumerate(k for k in curves[0] if k.endswith('_mIoU')):
            axes[0].plot(t, [r[key] for r in curves], style, marker='o', color=f'C{i}',
                         label=key[:-5] + tag)
        for ax, (_, _, measures) in zip(axes[1:], GAP_PANELS):
            for key, marker, colour, name in measures:
                if key in curves[0]:
                    ax.plot(t, [r[key] for r in curves], style, marker=marker,
                            color=colour, label=name + tag)
    axes[0].set(xlabel='t', ylabel='mIoU of the degraded path (%)',
                title='segmentation along the bridge')
    axes[1].axhline(0.5, color='grey', lw=0.8, ls=':')
    axes[1].set(ylim=(0.4, 1.02))
    axes[2].set(ylim=(0, 1.02))
    for ax, (panel, ylabel, _) in zip(axes[1:], GAP_PANELS):
        ax.set(xlabel='t', ylabel=ylabel, title=panel)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc='best')
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
    p.add_argument('--probe-images', type=int, default=4,
                   help='training images per domain of the few-image probe')
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
                    args.seed, args.device, args.pixels, args.probe_images)
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

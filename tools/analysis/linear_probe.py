"""Do an encoder's frozen features carry the benchmark's classes? A linear probe.

For each encoder (the benchmark's small MiT from ``--weights`` files, and at random
init, as the scratch regime starts), the four stages' features of the procedural
benchmark's images are upsampled to stride 4 and concatenated (32 + 64 + 128 + 256 =
480 channels), standardised with the training sample's statistics, and a linear
classifier (multinomial logistic regression, one weight per channel and class) is
fitted to ``--pixels`` labelled pixels of each source training image. The probe is
scored on source val, and on target val of the same benchmark (the probe never sees
target: how far the features carry the classes across the domain gap): mIoU and the
IoU of every class, logits upsampled to the labels' resolution.

    python tools/analysis/linear_probe.py [--data-root data/procedural] \
        [--weights pretrained/mit_tiny_formula.pth] [--random-init] [--out DIR]

Writes ``<out>/linear_probe.json`` (complete or absent) and prints one table per
domain.
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmseg_dida.apis.report import format_per_class
from mmseg_dida.models.utils.weight_loading import load_pretrained_checked
from mmseg_dida.utils.atomic_files import atomic_write_text

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODEL_CONFIG = osp.join(REPO, 'configs/_base_/models/benchmark_mit_tiny.py')
CLASSES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
           'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car',
           'truck', 'bus', 'train', 'motorcycle', 'bicycle')
IGNORE = 255


def read_split(root: str, split: str, limit: int = 0) -> List[Tuple[str, str]]:
    """(image, label) paths of ``<root>/leftImg8bit/<split>`` in Cityscapes layout."""
    images = sorted(glob.glob(osp.join(root, 'leftImg8bit', split, '*',
                                       '*_leftImg8bit.png')))
    if not images:
        raise FileNotFoundError(f'no images under {root}/leftImg8bit/{split}; generate '
                                'the benchmark with tools/generate_benchmark.py')
    pairs = [(p, p.replace('leftImg8bit', 'gtFine', 1).replace(
        '_leftImg8bit.png', '_gtFine_labelTrainIds.png')) for p in images]
    return pairs[:limit] if limit else pairs


def build_encoder(weights: str = None, seed: int = 0) -> torch.nn.Module:
    """The benchmark's small MiT, loaded strictly from ``weights`` or at its random
    init under ``seed``; frozen, eval mode."""
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    torch.manual_seed(seed)
    encoder = MODELS.build(Config.fromfile(MODEL_CONFIG).model.backbone)
    if weights:
        load_pretrained_checked(encoder, weights, logger='silent')
    else:
        encoder.init_weights()
    return encoder.eval().requires_grad_(False)


@torch.no_grad()
def features(encoder, image_bgr: np.ndarray) -> torch.Tensor:
    """(480, H/4, W/4) features of one BGR uint8 image, normalised as the benchmark's
    data preprocessor does."""
    pre = Config.fromfile(MODEL_CONFIG).data_preprocessor
    x = torch.from_numpy(np.ascontiguousarray(image_bgr[..., ::-1])).permute(2, 0, 1)
    x = (x.float() - torch.tensor(pre.mean).view(3, 1, 1)) / torch.tensor(
        pre.std).view(3, 1, 1)
    feats = encoder(x[None])
    size = feats[0].shape[-2:]
    return torch.cat([F.interpolate(f, size=size, mode='bilinear', align_corners=False)
                      for f in feats], 1)[0]


def fit_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int, steps: int = 300,
              weight_decay: float = 1e-4) -> torch.nn.Linear:
    """Multinomial logistic regression of labels ``y`` (N,) on ``x`` (N, C), full
    batch, L-BFGS."""
    probe = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(probe.weight)
    torch.nn.init.zeros_(probe.bias)
    opt = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=steps,
                            history_size=20, line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(probe(x), y) + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe


def per_class_iou(conf: np.ndarray) -> Dict[str, float]:
    """IoU (percent) of every class that occurs in the labels of ``conf``."""
    tp = np.diag(conf).astype(float)
    union = conf.sum(0) + conf.sum(1) - np.diag(conf)
    return {CLASSES[c]: 100.0 * tp[c] / union[c] for c in range(len(conf))
            if conf[c].sum() > 0}


def probe_encoder(encoder, train: List, evals: Dict[str, List], pixels: int,
                  seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Fit a probe on ``pixels`` random labelled pixels (stride-4 centres) of each
    training image; per-class IoU on each evaluation split."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for img_path, lbl_path in train:
        f = features(encoder, cv2.imread(img_path))
        lbl = cv2.imread(lbl_path, cv2.IMREAD_UNCHANGED)
        h, w = f.shape[-2:]
        s = lbl.shape[0] // h
        small = torch.from_numpy(lbl[s // 2::s, s // 2::s][:h, :w].astype(np.int64))
        valid = np.flatnonzero(small.numpy().ravel() != IGNORE)
        pick = rng.choice(valid, size=min(pixels, len(valid)), replace=False)
        xs.append(f.flatten(1)[:, pick].T)
        ys.append(small.flatten()[pick])
    x, y = torch.cat(xs), torch.cat(ys)
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    probe = fit_probe((x - mean) / std, y, len(CLASSES))
    out = {}
    for name, pairs in evals.items():
        conf = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
        for img_path, lbl_path in pairs:
            f = features(encoder, cv2.imread(img_path))
            lbl = cv2.imread(lbl_path, cv2.IMREAD_UNCHANGED).astype(np.int64)
            with torch.no_grad():
                logits = probe(((f.flatten(1).T - mean) / std)).T.reshape(
                    len(CLASSES), *f.shape[-2:])
                pred = F.interpolate(logits[None], size=lbl.shape, mode='bilinear',
                                     align_corners=False)[0].argmax(0).numpy()
            keep = lbl != IGNORE
            conf += np.bincount(lbl[keep] * len(CLASSES) + pred[keep],
                                minlength=len(CLASSES) ** 2).reshape(conf.shape)
        ious = per_class_iou(conf)
        out[name] = dict(mIoU=float(np.mean(list(ious.values()))), **ious)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Linear probe of frozen encoder features on the benchmark.')
    p.add_argument('--data-root', default='data/procedural')
    p.add_argument('--weights', nargs='*', default=['pretrained/mit_tiny_formula.pth'],
                   help='encoder weight files to probe (default: %(default)s)')
    p.add_argument('--random-init', action='store_true', default=True,
                   help='also probe the random init (default: on)')
    p.add_argument('--no-random-init', dest='random_init', action='store_false')
    p.add_argument('--pixels', type=int, default=256,
                   help='labelled training pixels per source image (default 256)')
    p.add_argument('--max-images', type=int, default=0, help='per split; 0 = all')
    p.add_argument('--out', default='work_dirs/linear_probe')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    try:
        train = read_split(osp.join(args.data_root, 'source'), 'train', args.max_images)
        evals = {d: read_split(osp.join(args.data_root, d), 'val', args.max_images)
                 for d in ('source', 'target')}
    except FileNotFoundError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    encoders = {osp.basename(w): w for w in args.weights}
    if args.random_init:
        encoders['random init'] = None
    results = {}
    for name, weights in encoders.items():
        results[name] = probe_encoder(build_encoder(weights), train, evals, args.pixels)
        print(f'[probe] {name}: ' + ', '.join(
            f"{d} val mIoU {r['mIoU']:.2f}" for d, r in results[name].items()),
            flush=True)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(osp.join(args.out, 'linear_probe.json'),
                      json.dumps(dict(data_root=args.data_root, pixels=args.pixels,
                                      results=results), indent=1) + '\n')
    for domain in evals:
        print()
        print(format_per_class(
            {name: [{k: v for k, v in r[domain].items() if k != 'mIoU'}]
             for name, r in results.items()},
            title=f'Linear probe of frozen features, {domain} val IoU per class '
                  f'({args.data_root})'))
    return 0


if __name__ == '__main__':
    sys.exit(main())

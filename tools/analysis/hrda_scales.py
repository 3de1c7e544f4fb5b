"""HRDA's two scales along the bridge: which view segments which class, and what the
scale attention trusts.

For an HRDA(-family) checkpoint (HRDA, MIC(HRDA), each with or without DiDA), on the
test set (target val) and every extra test set (source val), clean and degraded with
DiDA's forward process at ``--timesteps`` (Eq. 1; the same eps per image at every t,
seeded, so two models see the same degraded images; a baseline is degraded with DiDA's
default degradation), this evaluates three predictions of the same inference features
(LR context of the whole image + HRDA's overlapping HR windows):

* ``fused``: HRDA's prediction, up((1 - a) y_LR) + up(a) y_HR (what is deployed);
* ``lr``: the LR context alone, y_LR;
* ``hr``: the HR windows alone (averaged where they overlap), y_HR;

and the class-wise scale attention a_c (HRDA Sec. 3.3) averaged over the pixels whose
label is c (``att_on_class``: how much the fused prediction of class c trusts HR
where c is). The clean row (``t = clean``) is the deployed model (g alone); the degraded
rows are DiDA's degraded path ((g + g') at t) for a DiDA model and g(x_t) for a
baseline, as in ``bridge_curve.py``.

Writes ``<out>/hrda_scales.csv`` (domain, t, view, mIoU and the IoU of every class;
view ``att`` holds the attention per class instead) and prints the mIoU and the IoU of
the classes named by ``--focus`` (default pole, sign).

Usage::

    python tools/analysis/hrda_scales.py CONFIG CHECKPOINT [--out DIR]
        [--timesteps 0 25 50 75 90] [--max-images N] [--focus pole 'traffic sign']
"""
import argparse
import csv
import io
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmseg.evaluation import IoUMetric

from mmseg_dida.apis.degraded_eval import degraded_batches, load_model
from mmseg_dida.models.decode_heads.hrda_head import (  # noqa: E402
    HRDAHead,
    MultiResFeatures,
    fuse_scales,
)
from mmseg_dida.models.segmentors.uda_segmentor import crop_box  # noqa: E402
from mmseg_dida.models.utils.degradation import Degradation  # noqa: E402
from mmseg_dida.utils.atomic_files import atomic_write  # noqa: E402

VIEWS = ('fused', 'lr', 'hr')
DEFAULT_TIMESTEPS = (0, 25, 50, 75, 90)


def _backbone_feats(segmentor, x: torch.Tensor, t: Optional[torch.Tensor]):
    """Backbone levels of ``x``: the deployed g (t None) or the degraded pass at t
    (DiDA: (g + g')(x) through the DiffusionEncoder's timestep scope)."""
    backbone = segmentor.backbone
    if t is not None and hasattr(backbone, 'timestep'):
        with backbone.timestep(t):
            return segmentor.backbone_feat(x)
    return segmentor.backbone_feat(x)


@torch.no_grad()
def scale_views(segmentor, x: torch.Tensor, t: Optional[torch.Tensor]
                ) -> Dict[str, torch.Tensor]:
    """Logits of the fused, LR-only and HR-only predictions at the input size and the
    scale attention (N, C or 1, H, W) of HRDA's inference features of ``x``."""
    head = segmentor.decode_head
    if not isinstance(head, HRDAHead):
        raise TypeError(f'hrda_scales: the decode head is {type(head).__name__}, not '
                        'an HRDAHead')
    n = x.shape[0]
    boxes = segmentor.inference_boxes(x.shape[-2:])
    lr = _backbone_feats(segmentor, segmentor._lr_image(x), t)
    crops = torch.cat([crop_box(x, b) for b in boxes])
    hr = _backbone_feats(segmentor, crops, None if t is None else t.repeat(len(boxes)))
    feats = MultiResFeatures(lr=lr, hr=hr, hr_boxes=list(boxes),
                             hr_size=tuple(x.shape[-2:]),
                             scale_ratio=segmentor.hr_scale / segmentor.lr_scale)
    lr_seg = head.head(feats.lr)
    hr_seg = head.head(feats.hr)
    att = head.scale_attention_map(feats.lr)
    size = (int(lr_seg.shape[-2] * feats.scale_ratio),
            int(lr_seg.shape[-1] * feats.scale_ratio))
    canvas, _ = head._hr_canvas(hr_seg, feats, n, size)
    fused = fuse_scales(lr_seg, att, canvas, head.align_corners)

    def up(v):
        return F.interpolate(v, size=x.shape[-2:], mode='bilinear', align_corners=False)
    return dict(fused=up(fused), lr=up(lr_seg), hr=up(canvas), att=up(att))


def _label_size(tensor: torch.Tensor, sample) -> torch.Tensor:
    """(C, H, W) at the input size -> the label's size (crop the padding, resize)."""
    h, w = sample.img_shape
    out = tensor[:, :h, :w]
    label_hw = tuple(sample.gt_sem_seg.data.shape[-2:])
    if tuple(out.shape[-2:]) != label_hw:
        out = F.interpolate(out[None], size=label_hw, mode='bilinear',
                            align_corners=False)[0]
    return out


@torch.no_grad()
def evaluate(cfg: Config, checkpoint: str, timesteps: Sequence[int],
             max_images: int = 0, seed: int = 0, device: str = 'cpu') -> List[dict]:
    """Rows (domain, t, view, mIoU, per-class IoU or attention)."""
    model, segmentor, plugin = load_model(cfg, checkpoint, device)
    degradation = plugin.degradation if plugin is not None else Degradation()
    degradation.to(device)
    num_classes = segmentor.decode_head.num_classes
    classes = None
    ignore = getattr(segmentor.decode_head, 'ignore_index', 255)
    areas: Dict[tuple, list] = {}
    att_sum: Dict[tuple, torch.Tensor] = {}
    att_count: Dict[tuple, torch.Tensor] = {}
    steps = ['clean'] + [int(t) for t in timesteps]
    for b in degraded_batches(cfg, segmentor, degradation,
                              [None] + [int(t) for t in timesteps], max_images, seed,
                              device, desc='hrda scales'):
        domain, step = b.domain, 'clean' if b.step is None else b.step
        classes = classes or b.classes or [str(c) for c in range(num_classes)]
        out = scale_views(segmentor, b.x, b.t)
        for i, sample in enumerate(b.samples):
            label = sample.gt_sem_seg.data.squeeze(0).to(device)
            for view in VIEWS:
                pred = _label_size(out[view][i], sample).argmax(0)
                res = IoUMetric.intersect_and_union(pred, label, num_classes, ignore)
                acc = areas.setdefault((domain, step, view), [0, 0, 0, 0])
                for k, r in enumerate(res):
                    acc[k] = acc[k] + r.cpu()
            att = _label_size(out['att'][i], sample)
            s = att_sum.setdefault((domain, step), torch.zeros(num_classes))
            c = att_count.setdefault((domain, step), torch.zeros(num_classes))
            for cls in range(num_classes):
                mask = label == cls
                if mask.any():
                    a = att[cls if att.shape[0] > 1 else 0]
                    s[cls] += float(a[mask].sum())
                    c[cls] += float(mask.sum())
    rows = []
    for (domain, step, view), (inter, union, _, label) in areas.items():
        iou = (inter.double() / union.double() * 100).numpy()
        present = (label > 0).numpy()
        row = dict(domain=domain, t=step, view=view,
                   mIoU=float(np.nanmean(iou[present])))
        row.update({name: (float(iou[k]) if present[k] else float('nan'))
                    for k, name in enumerate(classes)})
        rows.append(row)
    for (domain, step), s in att_sum.items():
        mean = s / att_count[(domain, step)].clamp(min=1)
        row = dict(domain=domain, t=step, view='att',
                   mIoU=float('nan'))
        row.update({name: float(mean[k]) for k, name in enumerate(classes)})
        rows.append(row)
    order = {s: i for i, s in enumerate(steps)}
    views = {v: i for i, v in enumerate(VIEWS + ('att', ))}
    rows.sort(key=lambda r: (r['domain'], order[r['t']], views[r['view']]))
    return rows


def write_csv(rows: List[dict], path: str) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f'{v:.4f}' if isinstance(v, float) else v)
                         for k, v in row.items()})
    with atomic_write(path, 'w') as f:
        f.write(text.getvalue())


def format_rows(rows: List[dict], focus: Sequence[str]) -> str:
    keys = ['domain', 't', 'view', 'mIoU', *focus]
    lines = [' '.join(f'{k:>14}' for k in keys)]
    for row in rows:
        lines.append(' '.join(
            f'{row[k]:>14.3f}' if isinstance(row[k], float) else f'{row[k]!s:>14}'
            for k in keys))
    return '\n'.join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--out', default=None,
                   help='output folder (default: <checkpoint folder>/hrda_scales)')
    p.add_argument('--timesteps', type=int, nargs='*', default=list(DEFAULT_TIMESTEPS))
    p.add_argument('--max-images', type=int, default=0,
                   help='images per domain (0: all)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--device', default='cpu')
    p.add_argument('--focus', nargs='+', default=['pole', 'traffic sign'],
                   help='classes printed beside the mIoU')
    args = p.parse_args(argv)
    for path in (args.config, args.checkpoint):
        if not osp.isfile(path):
            print(f"error: '{path}' does not exist", file=sys.stderr)
            return 2
    cfg = Config.fromfile(args.config)
    rows = evaluate(cfg, args.checkpoint, args.timesteps, args.max_images, args.seed,
                    args.device)
    unknown = [c for c in args.focus if c not in rows[0]]
    if unknown:
        print(f'error: --focus {unknown} are not classes of {args.config}: '
              f'{[k for k in rows[0] if k not in ("domain", "t", "view", "mIoU")]}',
              file=sys.stderr)
        return 2
    out = args.out or osp.join(osp.dirname(osp.abspath(args.checkpoint)),
                               'hrda_scales')
    os.makedirs(out, exist_ok=True)
    write_csv(rows, osp.join(out, 'hrda_scales.csv'))
    print(format_rows(rows, args.focus))
    print(f'wrote {out}/hrda_scales.csv')
    return 0


if __name__ == '__main__':
    sys.exit(main())

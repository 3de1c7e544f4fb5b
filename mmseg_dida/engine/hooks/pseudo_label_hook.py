"""PseudoLabelStatsHook: how good the teacher's pseudo labels are, class by class,
over training.

Self-training feeds its own predictions back as targets (DAFormer Eq. 3); a class whose
pseudo labels drift (thin classes first) is learnt from its errors. Where the target's
training labels exist (the procedural benchmark ships them; real targets may keep them
for analysis) this hook compares the teacher's pseudo labels of every training step
with them and reports, over windows of ``interval`` iterations and per class:

* ``pl_frac``: the fraction of pseudo-labelled pixels given to the class;
* ``gt_frac``: the fraction of ground-truth pixels of the class in the same images;
* ``pl_iou``: the IoU of pseudo labels against ground truth (pixels with an ignore
  label in the ground truth are left out).

Without labels only ``pl_frac`` is reported. The records go to
``<work_dir>/pseudo_label_stats.jsonl`` (one JSON object per window, the file written
atomically each time, records of a resumed run past its checkpoint replaced) and a log
line. The hook only reads: it asks the UDA model to keep the step's pseudo labels
(``model.record_pseudo_labels``), loads label files, and draws no random numbers, so a
run's training stream is the same with and without it.

The target label of an image is found Cityscapes-style: ``leftImg8bit`` -> ``gtFine`` in
the path and the image suffix -> ``label_suffix`` (``_gtFine_labelTrainIds.png``); the
label is resized (nearest) to the image's shape after the pipeline and flipped as the
image was.
"""
import json
import os.path as osp
from typing import Dict, List, Optional

import mmcv
import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from ...utils.atomic_files import atomic_write_text

__all__ = ['PseudoLabelStatsHook', 'STATS_FILENAME', 'target_label_path']

#: the record file the hook writes into the work dir (and the analysis tools read)
STATS_FILENAME = 'pseudo_label_stats.jsonl'


def target_label_path(img_path: str, img_suffix: str = '_leftImg8bit.png',
                      label_suffix: str = '_gtFine_labelTrainIds.png') -> str:
    """Cityscapes-layout label file of a target image (``leftImg8bit`` -> ``gtFine``)."""
    folder, name = osp.split(img_path)
    parts = folder.split(osp.sep)
    if 'leftImg8bit' in parts:
        parts[len(parts) - 1 - parts[::-1].index('leftImg8bit')] = 'gtFine'
    if name.endswith(img_suffix):
        name = name[:-len(img_suffix)] + label_suffix
    return osp.join(osp.sep.join(parts), name)


@HOOKS.register_module()
class PseudoLabelStatsHook(Hook):
    """Per-class pseudo-label fractions (and IoU against the target's training labels
    where they exist) every ``interval`` iterations.

    Args:
        interval: Window length in iterations (0: off).
        img_suffix: Suffix of target image files.
        label_suffix: Suffix of their label files.
        ignore_index: Label value left out of the comparison.
        filename: Record file in the work dir.
    """

    priority = 'LOW'
    training_only = True  # dropped from deployed configs

    def __init__(self, interval: int = 500, img_suffix: str = '_leftImg8bit.png',
                 label_suffix: str = '_gtFine_labelTrainIds.png',
                 ignore_index: int = 255,
                 filename: str = STATS_FILENAME):
        if not isinstance(interval, int) or interval < 0:
            raise ValueError('PseudoLabelStatsHook: interval must be an int >= 0, '
                             f'got {interval!r}')
        self.interval = interval
        self.img_suffix = img_suffix
        self.label_suffix = label_suffix
        self.ignore_index = ignore_index
        self.filename = filename
        self.records: List[dict] = []
        self._reset(None)
        self._labels_missing: Optional[str] = None

    def _reset(self, num_classes: Optional[int]) -> None:
        self.confusion = (None if num_classes is None else
                          np.zeros((num_classes, num_classes), np.int64))
        self.pl_count = (None if num_classes is None else
                         np.zeros(num_classes, np.int64))

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def _path(self, runner) -> str:
        return osp.join(runner.work_dir, self.filename)

    def before_train(self, runner) -> None:
        model = self._model(runner)
        if not self.interval or not hasattr(model, 'record_pseudo_labels'):
            self.interval = 0
            return
        model.record_pseudo_labels = True
        path = self._path(runner)
        self.records = []
        if osp.isfile(path):  # resumed: keep the windows before the resumed iteration
            with open(path) as f:
                self.records = [json.loads(line) for line in f if line.strip()]
            self.records = [r for r in self.records if r['iter'] <= runner.iter]
        self._reset(model.num_classes)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not self.interval:
            return
        model = self._model(runner)
        labels = getattr(model, 'last_pseudo_labels', None)
        model.last_pseudo_labels = None
        if labels is not None and data_batch is not None:
            self.accumulate(labels, data_batch['target']['data_samples'])
        if self.every_n_train_iters(runner, self.interval):
            self.flush(runner)

    def accumulate(self, pseudo: torch.Tensor, samples) -> None:
        """Add one step: ``pseudo`` (N, H, W) of the (padded) batch."""
        num_classes = self.pl_count.size
        pseudo = pseudo.cpu().numpy()
        for i, sample in enumerate(samples):
            h, w = sample.img_shape
            pl = pseudo[i, :h, :w].astype(np.int64)
            self.pl_count += np.bincount(pl.ravel(), minlength=num_classes)[:num_classes]
            gt = self.load_label(sample, (h, w))
            if gt is None:
                continue
            valid = gt != self.ignore_index
            valid &= gt < num_classes
            idx = gt[valid].astype(np.int64) * num_classes + pl[valid]
            self.confusion += np.bincount(idx, minlength=num_classes ** 2).reshape(
                num_classes, num_classes)

    def load_label(self, sample, shape) -> Optional[np.ndarray]:
        """The target training label of ``sample`` as the step saw the image."""
        path = target_label_path(sample.img_path, self.img_suffix, self.label_suffix)
        if not osp.isfile(path):
            self._labels_missing = path
            return None
        gt = mmcv.imread(path, flag='unchanged')
        if gt.ndim == 3:
            gt = gt[..., 0]
        if gt.shape[:2] != tuple(shape):
            gt = mmcv.imresize(gt, (shape[1], shape[0]), interpolation='nearest')
        if sample.metainfo.get('flip', False):
            gt = mmcv.imflip(gt, sample.metainfo.get('flip_direction', 'horizontal'))
        return gt

    def summary(self, iteration: int, classes) -> dict:
        """The window's record (and nothing reset)."""
        pl_total = max(int(self.pl_count.sum()), 1)
        record: Dict = dict(iter=iteration, classes=list(classes),
                            pl_frac=[round(float(c) / pl_total, 6)
                                     for c in self.pl_count])
        if self.confusion.sum() > 0:
            conf = self.confusion
            gt_n = conf.sum(1)
            inter = np.diag(conf)
            union = gt_n + conf.sum(0) - inter
            record['gt_frac'] = [round(float(c) / conf.sum(), 6) for c in gt_n]
            record['pl_iou'] = [None if u == 0 else round(100.0 * i / u, 3)
                                for i, u in zip(inter, union)]
            record['pl_acc'] = round(100.0 * inter.sum() / conf.sum(), 3)
        return record

    def flush(self, runner) -> None:
        model = self._model(runner)
        classes = runner.train_dataloader.dataset.metainfo.get(
            'classes', [str(c) for c in range(model.num_classes)])
        record = self.summary(runner.iter + 1, classes)
        self.records = [r for r in self.records if r['iter'] < record['iter']]
        self.records.append(record)
        atomic_write_text(self._path(runner),
                          ''.join(json.dumps(r) + '\n' for r in self.records))
        # The log line names the classes that occur (in pseudo labels or labels);
        # the record keeps every class.
        seen = [k for k, f in enumerate(record['pl_frac'])
                if f > 0 or record.get('gt_frac', [0] * len(classes))[k] > 0]
        line = ', '.join(f'{classes[k]} {record["pl_frac"][k] * 100:.1f}%' for k in seen)
        msg = f'pseudo labels, iterations up to {record["iter"]}: fractions {line}'
        if 'pl_iou' in record:
            iou = record['pl_iou']
            msg += ('; gt fractions ' + ', '.join(
                f'{classes[k]} {record["gt_frac"][k] * 100:.1f}%' for k in seen) +
                '; IoU ' + ', '.join(
                    f'{classes[k]} {"-" if iou[k] is None else f"{iou[k]:.1f}"}'
                    for k in seen))
        elif self._labels_missing:
            msg += f' (no target label at {self._labels_missing})'
        runner.logger.info(msg)
        self._reset(model.num_classes)

"""mIoU over all classes, over named class subsets (e.g. SYNTHIA's 16 classes), and
per class.

UDA papers report SYNTHIA->Cityscapes over the 16 classes SYNTHIA labels (and sometimes
13): the mean of the per-class IoUs of those classes, taken from the same 19-class
confusion counts (DAFormer README: mIoU16 = mIoU19 * 19 / 16 when the 3 missing classes
score 0). This metric returns ``mIoU`` (all classes, as mmseg's ``IoUMetric``) plus one
``mIoU<suffix>`` entry per subset, and with ``per_class`` one ``IoU.<class name>`` entry
per class that occurs in the labels, so that per-class IoU reaches
the logs, ``scalars.json`` and ``test_metrics.json`` as numbers rather than only as
mmseg's printed table.
"""
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Union

import numpy as np
from mmengine.logging import print_log
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS


@METRICS.register_module()
class SubsetIoUMetric(IoUMetric):
    """:class:`IoUMetric` that also averages IoU over class subsets and reports it per
    class.

    Args:
        subsets (dict[str, Sequence[str | int]]): Result key -> classes (names from the
            dataset's ``classes`` or indices), e.g. ``dict(mIoU16=SYNTHIA_16_CLASSES)``.
        per_class (bool): Also return ``IoU.<class name>`` (percent, 2 decimals) for
            every class that occurs in the labels (a class only predicted, IoU 0 in
            mmseg's mean, or absent, NaN, is left out of the per-class entries).
            Default False.
        **kwargs: :class:`IoUMetric` arguments; ``iou_metrics`` must include 'mIoU'.
    """
    # metric names without a prefix ('mIoU', as mmseg's), said so explicitly: mmengine
    # warns about a metric class whose prefix is None
    default_prefix = ''

    def __init__(self, subsets: Optional[Dict[str, Sequence[Union[str, int]]]] = None,
                 per_class: bool = False, **kwargs):
        super().__init__(**kwargs)
        if 'mIoU' not in self.metrics:
            raise ValueError("SubsetIoUMetric: iou_metrics must include 'mIoU', got "
                             f'{self.metrics}')
        self.subsets = {str(k): list(v) for k, v in (subsets or {}).items()}
        self.per_class = bool(per_class)
        for key, classes in self.subsets.items():
            if not classes:
                raise ValueError(f'SubsetIoUMetric: subset {key} is empty')

    def _subset_indices(self, classes):
        names = list(self.dataset_meta['classes'])
        idx = []
        for c in classes:
            if isinstance(c, str):
                if c not in names:
                    raise KeyError(f'SubsetIoUMetric: class {c!r} is not one of the '
                                   f'dataset classes {names}')
                idx.append(names.index(c))
            else:
                if not 0 <= int(c) < len(names):
                    raise IndexError(f'SubsetIoUMetric: class index {c} out of range '
                                     f'for {len(names)} classes')
                idx.append(int(c))
        return idx

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = super().compute_metrics(results)
        if self.format_only or not (self.subsets or self.per_class):
            return metrics
        areas = tuple(sum(r) for r in zip(*results))
        iou = self.total_area_to_metrics(*areas, ['mIoU'], self.nan_to_num,
                                         self.beta)['IoU']
        iou = np.asarray(iou, dtype=np.float64)
        out = OrderedDict(metrics)
        for key, classes in self.subsets.items():
            out[key] = float(np.round(np.nanmean(iou[self._subset_indices(classes)])
                                      * 100, 2))
        if self.subsets:
            print_log('subset mIoU: ' + ', '.join(f'{k}={out[k]}'
                                                  for k in self.subsets), 'current')
        if self.per_class:
            labelled = np.asarray(areas[3]) > 0
            for name, value, occurs in zip(self.dataset_meta['classes'], iou, labelled):
                if occurs:
                    out[f'IoU.{name}'] = float(np.round(value * 100, 2))
        return out

"""SubsetIoUMetric: 19-class mIoU as mmseg's IoUMetric plus the SYNTHIA 16-class mIoU."""
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.registry import METRICS
from mmseg.structures import SegDataSample

from mmseg_dida.datasets.label_tables import CITYSCAPES_CLASSES, SYNTHIA_16_CLASSES


def sample(pred, gt):
    s = SegDataSample()
    s.pred_sem_seg = PixelData(data=torch.as_tensor(pred)[None])
    s.gt_sem_seg = PixelData(data=torch.as_tensor(gt)[None])
    return s.to_dict()


def run(metric_cfg, pairs):
    metric = METRICS.build(metric_cfg)
    metric.dataset_meta = dict(classes=CITYSCAPES_CLASSES)
    metric.process([{}], [sample(p, g) for p, g in pairs])
    return metric.compute_metrics(metric.results)


def test_subset_miou_known_values():
    # gt: every class 0..18 twice; predictions right for all but terrain (9), truck (14)
    # and train (16), which are predicted as road (0).
    gt = np.repeat(np.arange(19), 2)[None]
    pred = gt.copy()
    pred[np.isin(gt, [9, 14, 16])] = 0
    out = run(dict(type='SubsetIoUMetric', subsets=dict(mIoU16=SYNTHIA_16_CLASSES,
                                                         first2=[0, 'sidewalk'])),
              [(pred, gt)])
    iou = np.ones(19)
    iou[[9, 14, 16]] = 0
    iou[0] = 2 / 8  # road: 2 right, union 2 + 6 false positives
    assert out['mIoU'] == pytest.approx(np.round(iou.mean() * 100, 2))
    keep = [i for i in range(19) if i not in (9, 14, 16)]
    assert out['mIoU16'] == pytest.approx(np.round(iou[keep].mean() * 100, 2))
    assert out['first2'] == pytest.approx(62.5)
    # DAFormer README: with the 3 missing classes at IoU 0, mIoU16 = mIoU19 * 19 / 16
    assert out['mIoU16'] == pytest.approx(iou.sum() / 16 * 100, abs=0.01)
    base = run(dict(type='IoUMetric'), [(pred, gt)])
    assert {k: out[k] for k in base} == base


def test_subset_errors():
    with pytest.raises(KeyError, match="'tree'"):
        run(dict(type='SubsetIoUMetric', subsets=dict(x=['tree'])),
            [(np.zeros((1, 2)), np.zeros((1, 2)))])
    with pytest.raises(ValueError, match='empty'):
        METRICS.build(dict(type='SubsetIoUMetric', subsets=dict(x=[])))


def test_per_class_iou_keys_for_classes_that_occur():
    # road (0): 3 right, 1 predicted as car; car (13): 1 right + 1 false positive
    # (a pixel labelled sky); sky (10): labelled once, never predicted: IoU 0;
    # person (11): predicted once, never labelled: in mmseg's mean (IoU 0), not a
    # per-class entry; every other class absent: NaN.
    gt = np.array([[0, 0, 0, 0, 13, 13, 10]])
    pred = np.array([[0, 0, 0, 13, 13, 11, 13]])
    out = run(dict(type='SubsetIoUMetric', per_class=True), [(pred, gt)])
    per_class = {k: v for k, v in out.items() if k.startswith('IoU.')}
    assert per_class == {'IoU.road': 75.0, 'IoU.car': 25.0, 'IoU.sky': 0.0}
    assert out['mIoU'] == pytest.approx(np.round((0.75 + 0.25 + 0 + 0) / 4 * 100, 2))
    assert not any(k.startswith('IoU.') for k in run(
        dict(type='SubsetIoUMetric'), [(pred, gt)]))

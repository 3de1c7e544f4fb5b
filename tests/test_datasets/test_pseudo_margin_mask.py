"""GenerateValidPseudoMask + PackUDAInputs: the HRDA/MIC pseudo-label margin mask keeps
its geometry through mmseg's Resize, RandomCrop and RandomFlip."""
import numpy as np
import pytest
from mmcv.transforms import Compose
from mmseg.registry import DATASETS, TRANSFORMS


def results_with_coords(h, w, with_gt=True):
    """An image whose channels hold the original (row, col) of each pixel."""
    rows, cols = np.mgrid[:h, :w]
    img = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)
    res = dict(img=img, img_shape=(h, w), ori_shape=(h, w), seg_fields=[])
    if with_gt:
        res['gt_seg_map'] = (cols * 4 // w).astype(np.uint8)  # 4 vertical stripes
        res['seg_fields'].append('gt_seg_map')
    return res


def expected_mask(rows, cols, h, w, margins):
    top, bottom, left, right = margins
    return ((rows >= top) & (rows < h - bottom) & (cols >= left) &
            (cols < w - right)).astype(np.uint8)


@pytest.mark.parametrize('margins', [(2, 5, 3, 4), (0, 0, 0, 0), (0, 7, 0, 1)])
def test_mask_values(margins):
    h, w = 20, 30
    res = TRANSFORMS.build(dict(type='GenerateValidPseudoMask', margins=margins))(
        results_with_coords(h, w))
    rows, cols = np.mgrid[:h, :w]
    np.testing.assert_array_equal(res['valid_pseudo_mask'],
                                  expected_mask(rows, cols, h, w, margins))
    t, b, l, r = margins
    assert res['valid_pseudo_mask'].sum() == (h - t - b) * (w - l - r)
    assert res['seg_fields'] == ['gt_seg_map', 'valid_pseudo_mask']


def test_mask_survives_crop_and_flip():
    """Recover each output pixel's original coordinates from the image and check the
    mask there equals the margin test at those coordinates."""
    h, w, margins = 40, 60, (5, 12, 6, 3)
    pipeline = Compose([
        TRANSFORMS.build(dict(type='GenerateValidPseudoMask', margins=margins)),
        TRANSFORMS.build(dict(type='RandomCrop', crop_size=(16, 24))),
        TRANSFORMS.build(dict(type='RandomFlip', prob=0.5)),
        TRANSFORMS.build(dict(type='PackUDAInputs')),
    ])
    np.random.seed(0)
    flips = 0
    for _ in range(20):
        packed = pipeline(results_with_coords(h, w))
        img = packed['inputs'].numpy()
        mask = packed['data_samples'].valid_pseudo_mask.data
        assert mask.dtype.is_floating_point is False and tuple(mask.shape) == (1, 16, 24)
        rows, cols = img[0].astype(int), img[1].astype(int)
        np.testing.assert_array_equal(mask[0].numpy(),
                                      expected_mask(rows, cols, h, w, margins))
        gt = packed['data_samples'].gt_sem_seg.data[0].numpy()
        np.testing.assert_array_equal(gt, cols * 4 // w)  # gt moved identically
        flips += int(cols[0, 0] > cols[0, -1])
    assert 0 < flips < 20  # both flipped and unflipped crops were checked


def test_mask_resized_by_nearest():
    h, w, margins = 10, 12, (1, 2, 3, 1)
    pipeline = Compose([
        TRANSFORMS.build(dict(type='GenerateValidPseudoMask', margins=margins)),
        TRANSFORMS.build(dict(type='Resize', scale=(24, 20), keep_ratio=True)),
        TRANSFORMS.build(dict(type='PackUDAInputs')),
    ])
    packed = pipeline(results_with_coords(h, w, with_gt=False))
    rows, cols = np.mgrid[:h, :w]
    ref = expected_mask(rows, cols, h, w, margins).repeat(2, 0).repeat(2, 1)
    np.testing.assert_array_equal(packed['data_samples'].valid_pseudo_mask.data[0], ref)
    assert 'gt_sem_seg' not in packed['data_samples']


def test_cat_max_ratio_looks_at_labels_only():
    """RandomCrop's cat_max_ratio must judge gt_seg_map, not the (all-ones) mask."""
    h, w = 32, 64
    crop = TRANSFORMS.build(dict(type='RandomCrop', crop_size=(32, 16),
                                 cat_max_ratio=0.75))
    gen = TRANSFORMS.build(dict(type='GenerateValidPseudoMask', margins=(0, 0, 0, 0)))
    np.random.seed(1)
    ok = 0
    for _ in range(50):
        res = results_with_coords(h, w)
        res['gt_seg_map'] = (np.arange(w)[None].repeat(h, 0) >= 40).astype(np.uint8)
        res = crop(gen(res))
        _, cnt = np.unique(res['gt_seg_map'], return_counts=True)
        ok += int(len(cnt) > 1 and cnt.max() / cnt.sum() < 0.75)
        assert res['valid_pseudo_mask'].shape == (32, 16)
    # 7 of the 49 crop offsets qualify: ~7/50 crops without the ratio check, ~41/50
    # with its 10 re-draws (1 - (42/49)^10 + (42/49)^10 * 7/49 = 0.82).
    assert ok >= 30


def test_packer_equals_packsegininputs_without_mask_and_checks_shape():
    res = results_with_coords(8, 8)
    a = TRANSFORMS.build(dict(type='PackUDAInputs'))(dict(res))
    b = TRANSFORMS.build(dict(type='PackSegInputs'))(dict(res))
    assert (a['inputs'] == b['inputs']).all()
    assert (a['data_samples'].gt_sem_seg.data == b['data_samples'].gt_sem_seg.data).all()
    assert 'valid_pseudo_mask' not in a['data_samples']
    bad = dict(res, valid_pseudo_mask=np.ones((4, 4), np.uint8))
    with pytest.raises(ValueError, match='valid_pseudo_mask has shape'):
        TRANSFORMS.build(dict(type='PackUDAInputs'))(bad)
    with pytest.raises(ValueError, match='four non-negative'):
        TRANSFORMS.build(dict(type='GenerateValidPseudoMask', margins=(1, 2, 3)))


def test_unlabelled_target_pipeline_carries_mask(layout):
    root, _ = layout('cityscapes', [np.zeros((40, 80))] * 2, with_labels=False)
    ds = DATASETS.build(dict(
        type='CityscapesDataset', data_root=root,
        data_prefix=dict(img_path='leftImg8bit/train'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='GenerateValidPseudoMask', margins=[3, 12, 3, 3]),
            dict(type='Resize', scale=(40, 20), keep_ratio=True),
            dict(type='RandomCrop', crop_size=(16, 16)),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PackUDAInputs'),
        ]))
    sample = ds[0]['data_samples']
    assert 'gt_sem_seg' not in sample
    assert tuple(sample.valid_pseudo_mask.data.shape) == (1, 16, 16)

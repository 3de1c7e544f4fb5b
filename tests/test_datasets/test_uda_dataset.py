"""UDADataset: item format, independent deterministic target draws per rank/worker, and
Rare Class Sampling (DAFormer Eq. 6) frequencies and re-cropping."""
import json
import os.path as osp
from unittest import mock

import numpy as np
import pytest
import torch
from mmseg.registry import DATASETS

from mmseg_dida.datasets import uda_dataset as uda_module
from mmseg_dida.datasets.rcs import RareClassSampler, rcs_class_probs, write_rcs_stats

SRC_PIPE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')]
TGT_PIPE = [dict(type='LoadImageFromFile'), dict(type='PackUDAInputs')]


def gta_cfg(root, pipeline=SRC_PIPE):
    return dict(type='GTADataset', data_root=root, pipeline=pipeline,
                data_prefix=dict(img_path='images', seg_map_path='labels'))


def target_cfg(root):
    return dict(type='CityscapesDataset', data_root=root, pipeline=TGT_PIPE,
                data_prefix=dict(img_path='leftImg8bit/train'))


@pytest.fixture
def pair(layout):
    src_root, _ = layout('gta', [np.full((4, 6), c) for c in (0, 1, 2)])
    tgt_root, _ = layout('cityscapes', [np.zeros((4, 6))] * 7, with_labels=False)
    return src_root, tgt_root


def target_stream(ds, n=40):
    return [osp.basename(ds[i % len(ds)]['target']['data_samples'].img_path)
            for i in range(n)]


def test_item_format_and_length(pair):
    ds = DATASETS.build(dict(type='UDADataset', source=gta_cfg(pair[0]),
                             target=target_cfg(pair[1]), seed=0))
    assert len(ds) == 3
    item = ds[1]
    assert set(item) == {'source', 'target'}
    src = item['source']['data_samples']
    assert osp.basename(src.img_path) == '00002.png'  # the sampler's index -> source
    assert (src.gt_sem_seg.data == 1).all()
    assert 'gt_sem_seg' not in item['target']['data_samples']
    assert item['target']['inputs'].dtype == torch.uint8


def test_target_draws_deterministic_and_uniform(pair):
    make = lambda seed: DATASETS.build(dict(  # noqa: E731
        type='UDADataset', source=gta_cfg(pair[0]), target=target_cfg(pair[1]),
        seed=seed))
    a, b, c = target_stream(make(3)), target_stream(make(3)), target_stream(make(4))
    assert a == b and a != c
    counts = np.unique(target_stream(make(5), 350), return_counts=True)[1]
    assert len(counts) == 7 and counts.min() > 25  # ~50 each of 7 targets


def test_streams_differ_across_ranks_and_workers(pair):
    ds = DATASETS.build(dict(type='UDADataset', source=gta_cfg(pair[0]),
                             target=target_cfg(pair[1]), seed=3))

    def draws(rank, worker):
        info = None if worker is None else mock.Mock(id=worker)
        ds._rng_key = None
        with mock.patch.object(uda_module, 'get_dist_info', return_value=(rank, 2)), \
                mock.patch('torch.utils.data.get_worker_info', return_value=info):
            return [int(ds.rng.integers(10**6)) for _ in range(5)]

    streams = [draws(0, None), draws(1, None), draws(0, 0), draws(0, 1), draws(1, 0)]
    assert len({tuple(s) for s in streams}) == 5
    assert draws(1, 0) == streams[4]  # and each is reproducible


def test_rcs_probs_known_values():
    pixels = {0: 600, 5: 300, 18: 100}
    classes, probs = rcs_class_probs(pixels, temperature=0.1)
    assert classes == [18, 5, 0]  # ascending frequency, as DAFormer
    f = torch.tensor([0.1, 0.3, 0.6], dtype=torch.float64)
    ref = torch.softmax((1 - f) / 0.1, dim=0).numpy()
    np.testing.assert_allclose(probs, ref, rtol=1e-12)
    # T -> 0 picks the rarest class, T -> inf is uniform
    assert rcs_class_probs(pixels, 1e-4)[1][0] > 0.999
    np.testing.assert_allclose(rcs_class_probs(pixels, 1e4)[1], 1 / 3, atol=1e-4)


def test_rcs_sampling_frequencies(tmp_path):
    rng = np.random.default_rng(0)
    files = [f'labels/{i:05d}_labelTrainIds.png' for i in range(6)]
    stats = []
    for i, f in enumerate(files):
        s = {c: int(rng.integers(1000, 50000)) for c in range(4) if (i + c) % 3}
        stats.append(dict(s, file=f))
    write_rcs_stats(str(tmp_path), stats)
    with open(tmp_path / 'samples_with_class.json') as fh:
        assert set(json.load(fh)) == {'0', '1', '2', '3'}
    sampler = RareClassSampler(str(tmp_path), ['/x/' + f for f in files],
                               class_temp=0.05, min_pixels=5000)
    totals = {c: sum(s.get(c, 0) for s in stats) for c in range(4)}
    freq = np.array([totals[c] for c in sampler.classes]) / sum(totals.values())
    expected = torch.softmax(torch.tensor((1 - freq) / 0.05), 0).numpy()
    n = 20000
    gen = np.random.default_rng(1)
    draws = [sampler.sample(gen) for _ in range(n)]
    observed = np.array([sum(c == k for c, _ in draws) for k in sampler.classes]) / n
    sigma = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(observed - expected) < 4 * sigma + 1e-9), (observed, expected)
    # every drawn file holds more than min_pixels of the drawn class
    for c, idx in draws[:500]:
        assert stats[idx].get(c, 0) > 5000


def rare_corner_source(layout):
    """Two 32x32 GTA images of class 0; the first has an 8x8 corner of class 18."""
    a = np.zeros((32, 32), np.uint8)
    a[:8, :8] = 18
    root, seg_paths = layout('gta', [a, np.zeros((32, 32), np.uint8)])
    write_rcs_stats(root, [
        {0: 1024 - 64, 18: 64, 'file': 'labels/00001_labelTrainIds.png'},
        {0: 1024, 'file': 'labels/00002_labelTrainIds.png'}])
    return root


def test_rcs_recrops_until_class_is_present(layout, pair):
    root = rare_corner_source(layout)
    pipe = SRC_PIPE[:2] + [dict(type='RandomCrop', crop_size=(16, 16)),
                           dict(type='PackSegInputs')]

    def fraction_with_class(min_crop_ratio):
        ds = DATASETS.build(dict(
            type='UDADataset', source=gta_cfg(root, pipe), target=target_cfg(pair[1]),
            seed=0, rare_class_sampling=dict(class_temp=0.01, min_pixels=10,
                                             min_crop_ratio=min_crop_ratio)))
        np.random.seed(0)
        hits = []
        for i in range(60):
            seg = ds[i % 2]['source']['data_samples'].gt_sem_seg.data
            hits.append(int((seg == 18).sum()) > 5)
        return np.mean(hits)

    # T=0.01: class 18 (6% of pixels) is drawn with p ~ 1 - 1e-4, always from image 1.
    # A random 16x16 crop shows > 5 of its pixels with p ~ (7/17)^2 = 0.17; re-cropping
    # up to 10 times raises that to ~0.85.
    assert fraction_with_class(0.5) > 0.7
    assert fraction_with_class(0.0) < 0.4


def test_rcs_bad_input(layout, pair):
    src_root, _ = layout('gta', [np.zeros((4, 4))])
    cfg = dict(type='UDADataset', source=gta_cfg(src_root), target=target_cfg(pair[1]),
               rare_class_sampling=dict(class_temp=0.01, min_pixels=3000,
                                        min_crop_ratio=0.5))
    with pytest.raises(FileNotFoundError, match='sample_class_stats.json'):
        DATASETS.build(cfg)
    write_rcs_stats(src_root, [{0: 16, 'file': 'labels/00001_labelTrainIds.png'}])
    with pytest.raises(ValueError, match='min_pixels=3000 pixels of class 0'):
        DATASETS.build(cfg)
    cfg['rare_class_sampling'] = dict(class_temp=0.01, min_pixels=3)
    with pytest.raises(KeyError, match='min_crop_ratio'):
        DATASETS.build(cfg)


def test_empty_target_is_an_error(pair, tmp_path):
    (tmp_path / 'empty' / 'leftImg8bit' / 'train').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='target dataset'):
        DATASETS.build(dict(type='UDADataset', source=gta_cfg(pair[0]),
                            target=target_cfg(str(tmp_path / 'empty'))))


def test_dataloader_workers_draw_different_targets(pair):
    from mmengine.dataset import pseudo_collate
    ds = DATASETS.build(dict(type='UDADataset', source=gta_cfg(pair[0]),
                             target=target_cfg(pair[1]), seed=1))
    loader = torch.utils.data.DataLoader(
        ds, batch_size=1, num_workers=2, collate_fn=pseudo_collate,
        sampler=[0] * 16)
    names = [osp.basename(b['target']['data_samples'][0].img_path) for b in loader]
    # Workers 0 and 1 serve alternate batches; equal streams would repeat pairwise.
    assert names[0::2] != names[1::2]


def test_runner_dataloader_with_infinite_sampler(pair):
    from mmengine.runner import Runner
    loader = Runner.build_dataloader(dict(
        batch_size=2, num_workers=0,
        sampler=dict(type='InfiniteSampler', shuffle=True),
        dataset=dict(type='UDADataset', source=gta_cfg(pair[0]),
                     target=target_cfg(pair[1]))), seed=0)
    batch = next(iter(loader))
    assert set(batch) == {'source', 'target'}
    assert len(batch['source']['inputs']) == len(batch['target']['data_samples']) == 2
    assert batch['source']['data_samples'][0].gt_sem_seg.data.shape == (1, 4, 6)

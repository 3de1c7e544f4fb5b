"""The UDA dataset configs build on tiny data in their layouts and keep the original
resize/crop values."""
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmseg.registry import DATASETS

CFG_DIR = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
                   'configs', '_base_', 'datasets')
# config -> (source kind, target kind, source resize, target resize, crop, margins)
CONFIGS = {
    'uda_gta_to_cityscapes_512x512': ('gta', 'cityscapes', (1280, 720), (1024, 512),
                                      512, False),
    'uda_synthia_to_cityscapes_512x512': ('synthia', 'cityscapes', (1280, 760),
                                          (1024, 512), 512, False),
    'uda_cityscapes_to_acdc_512x512': ('cityscapes', 'acdc', (1024, 512), (960, 540),
                                       512, False),
    'uda_cityscapes_to_darkzurich_512x512': ('cityscapes', 'dark_zurich', (1024, 512),
                                             (960, 540), 512, False),
    'uda_gtaHR_to_cityscapesHR_1024x1024': ('gta', 'cityscapes', (2560, 1440),
                                            (2048, 1024), 1024, True),
    'uda_synthiaHR_to_cityscapesHR_1024x1024': ('synthia', 'cityscapes', (2560, 1520),
                                                (2048, 1024), 1024, True),
    'uda_cityscapesHR_to_acdcHR_1024x1024': ('cityscapes', 'acdc', (2048, 1024),
                                             (1920, 1080), 1024, False),
    'uda_cityscapesHR_to_darkzurichHR_1024x1024': ('cityscapes', 'dark_zurich',
                                                   (2048, 1024), (1920, 1080), 1024,
                                                   False),
}


def step(pipeline, type_):
    return [t for t in pipeline if t['type'] == type_][0]


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_config_values_and_build(name, layout):
    src_kind, tgt_kind, src_scale, tgt_scale, crop, margins = CONFIGS[name]
    cfg = Config.fromfile(osp.join(CFG_DIR, name + '.py'))
    train = cfg.train_dataloader.dataset
    assert train.type == 'UDADataset'
    src_pipe, tgt_pipe = train.source.pipeline, train.target.pipeline
    assert step(src_pipe, 'Resize').scale == src_scale
    assert step(src_pipe, 'RandomCrop').crop_size == (crop, crop)
    assert step(src_pipe, 'RandomCrop').cat_max_ratio == 0.75
    assert step(tgt_pipe, 'Resize').scale == tgt_scale
    assert 'cat_max_ratio' not in step(tgt_pipe, 'RandomCrop')
    assert step(src_pipe, 'RandomFlip').prob == step(tgt_pipe, 'RandomFlip').prob == 0.5
    assert not any(t['type'] == 'LoadAnnotations' for t in tgt_pipe)
    has_margins = any(t['type'] == 'GenerateValidPseudoMask' for t in tgt_pipe)
    assert has_margins == margins
    assert step(cfg.test_pipeline, 'Resize').scale == tgt_scale
    if src_kind == 'synthia':
        assert len(cfg.val_evaluator.subsets.mIoU16) == 16

    # Build on tiny data: small images, a crop that fits after the resize.
    src_root, _ = layout(src_kind, [np.full((36, 64), 1), np.full((36, 64), 2)])
    tgt_root, _ = layout(tgt_kind, [np.zeros((36, 64))] * 3, with_labels=False)
    val_root, _ = layout(tgt_kind, [np.full((36, 64), 4)], split='val')
    for pipe in (src_pipe, tgt_pipe):
        step(pipe, 'RandomCrop').crop_size = (8, 8)
        step(pipe, 'Resize').scale = (64, 32)
    train.source.data_root, train.target.data_root = src_root, tgt_root
    if tgt_kind == 'dark_zurich':
        train.target.data_prefix.img_path = 'rgb_anon/train'
    ds = DATASETS.build(train)
    item = ds[0]
    assert tuple(item['source']['inputs'].shape) == (3, 8, 8)
    assert (item['source']['data_samples'].gt_sem_seg.data == 1).all()
    assert ('valid_pseudo_mask' in item['target']['data_samples']) == margins

    val = cfg.val_dataloader.dataset
    val.data_root = val_root
    step(val.pipeline, 'Resize').scale = (64, 32)
    val_ds = DATASETS.build(val)
    assert len(val_ds) == 1
    assert (val_ds[0]['data_samples'].gt_sem_seg.data == 4).all()

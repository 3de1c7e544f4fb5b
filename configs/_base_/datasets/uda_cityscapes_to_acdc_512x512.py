# Cityscapes -> ACDC, DAFormer 512-px setting: 512x512 crops.
# Values of lhoyer/MIC seg/configs/_base_/datasets/uda_cityscapes_to_acdc_512x512.py
# (mmseg 0.x img_scale=(w, h) with keep_ratio -> Resize(scale=(w, h), keep_ratio=True));
# normalisation and padding live in the model's data preprocessor. The target is
# read without labels; rare class sampling is switched on by the method configs via
# train_dataloader.dataset.rare_class_sampling.
crop_size = (512, 512)
source_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=(1024, 512), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
target_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(960, 540), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackUDAInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(960, 540), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
source_train = dict(
    type='CityscapesDataset', data_root='data/cityscapes', pipeline=source_train_pipeline,
    data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'))
target_train = dict(
    type='ACDCDataset', data_root='data/acdc', pipeline=target_train_pipeline,
    data_prefix=dict(img_path='rgb_anon/train'))
target_val = dict(
    type='ACDCDataset', data_root='data/acdc', pipeline=test_pipeline,
    data_prefix=dict(img_path='rgb_anon/val', seg_map_path='gt/val'))
train_dataloader = dict(
    batch_size=2, num_workers=4, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='UDADataset', source=source_train, target=target_train))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=target_val)
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
# mmengine's runner needs the loops beside the loaders and evaluators.
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

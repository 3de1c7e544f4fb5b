# The procedural source->target benchmark (tools/generate_benchmark.py), source-only form:
# labelled source train; validation on target val (primary metric: mIoU) and source val
# (reported as source/mIoU). Any other target in the Cityscapes layout plugs in with
# --cfg-options target_root=... (and the dataloaders that use it).
data_root = 'data/procedural'
source_root = data_root + '/source'
target_root = data_root + '/target'
dataset_type = 'CityscapesDataset'
crop_size = (128, 256)  # (h, w): whole images
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
source_train = dict(
    type=dataset_type, data_root=source_root, pipeline=train_pipeline,
    data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'))
target_val = dict(
    type=dataset_type, data_root=target_root, pipeline=test_pipeline,
    data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'))
source_val = dict(
    type=dataset_type, data_root=source_root, pipeline=test_pipeline,
    data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'))

train_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=source_train)
val_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=target_val)
test_dataloader = val_dataloader
source_val_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=source_val)
val_evaluator = dict(type='SubsetIoUMetric', iou_metrics=['mIoU'], per_class=True)
test_evaluator = val_evaluator
val_cfg = dict(type='MultiValLoop', extra=dict(
    source=dict(dataloader=source_val_dataloader, evaluator=val_evaluator)))
test_cfg = dict(type='MultiTestLoop', extra=dict(
    source=dict(dataloader=source_val_dataloader, evaluator=val_evaluator)))

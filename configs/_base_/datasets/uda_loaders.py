# The loaders, evaluator and loops of DAFormer/HRDA/MIC's UDA benchmarks
# (lhoyer/MIC seg/configs/_base_/datasets/uda_*), the same at every crop size: a
# training item is one source and one target image (UDADataset; the method configs
# switch rare class sampling on through train_dataloader.dataset.rare_class_sampling),
# validation is on the target's labelled val split. A dataset pair config
# (uda_<source>_to_<target>_<crop>.py) fills in the datasets from the per-dataset bases:
#   train_dataloader = dict(dataset=dict(source=..., target=...))
#   val_dataloader = dict(dataset=...); test_dataloader = val_dataloader
train_dataloader = dict(
    batch_size=2, num_workers=4, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='UDADataset'))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
# mmengine's runner needs the loops beside the loaders and evaluators.
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

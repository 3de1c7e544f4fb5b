# GTA -> Cityscapes, HRDA/MIC high-resolution setting: 1024x1024 crops.
# Values of lhoyer/MIC seg/configs/_base_/datasets/uda_gtaHR_to_cityscapesHR_1024x1024.py:
# the 512-px setting's datasets, loaders and evaluator with twice its resizes and crop.
# HRDA/MIC mask target pseudo labels at the Cityscapes image margins (plcrop 'v2').
_base_ = ['./uda_gta_to_cityscapes_512x512.py']
crop_size = (1024, 1024)
source_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=(2560, 1440), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
target_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='GenerateValidPseudoMask', margins=[30, 240, 30, 30]),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackUDAInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
source_train = dict(pipeline=source_train_pipeline)
target_train = dict(pipeline=target_train_pipeline)
target_val = dict(pipeline=test_pipeline)
train_dataloader = dict(dataset=dict(source=source_train, target=target_train))
val_dataloader = dict(dataset=target_val)
test_dataloader = val_dataloader

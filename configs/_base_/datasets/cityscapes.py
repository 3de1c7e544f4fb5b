# Cityscapes (Cordts et al., CVPR 2016): 2048x1024 street scenes, 19 classes. A UDA
# source (Cityscapes -> ACDC / Dark Zurich: train images with labels) or target
# (GTA / SYNTHIA -> Cityscapes: train images without labels, val images with labels).
# Without suffix at DAFormer's 512-px setting (512x512 crops), with _hr at HRDA/MIC's
# high-resolution setting (1024x1024 crops, twice the resize); resize scales (w, h) of
# lhoyer/MIC. At the high resolution, HRDA/MIC mask target pseudo labels at the image
# margins (plcrop 'v2'; [top, bottom, left, right] in original pixels: the
# rectification borders and the ego car at the bottom).
cityscapes = dict(type='CityscapesDataset', data_root='data/cityscapes')
cityscapes_source = dict(
    cityscapes,
    data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='Resize', scale=(1024, 512), keep_ratio=True),
        dict(type='RandomCrop', crop_size=(512, 512), cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputs'),
    ])
cityscapes_source_hr = dict(cityscapes_source, pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(1024, 1024), cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
])
cityscapes_target = dict(
    cityscapes,
    data_prefix=dict(img_path='leftImg8bit/train'),
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(1024, 512), keep_ratio=True),
        dict(type='RandomCrop', crop_size=(512, 512)),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackUDAInputs'),
    ])
cityscapes_target_hr = dict(cityscapes_target, pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='GenerateValidPseudoMask', margins=[30, 240, 30, 30]),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(1024, 1024)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackUDAInputs'),
])
cityscapes_val = dict(
    cityscapes,
    data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(1024, 512), keep_ratio=True),
        dict(type='LoadAnnotations'),
        dict(type='PackSegInputs'),
    ])
cityscapes_val_hr = dict(cityscapes_val, pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
])

# ACDC (Sakaridis et al., ICCV 2021), a UDA target: 1920x1080 drives in fog, night, rain
# and snow; train images without labels, val images with labels (Cityscapes classes).
# Without suffix at DAFormer's 512-px setting (512x512 crops), with _hr at HRDA/MIC's
# high-resolution setting (1024x1024 crops, twice the resize); resize scales (w, h) of
# lhoyer/MIC.
acdc = dict(type='ACDCDataset', data_root='data/acdc')
acdc_target = dict(
    acdc,
    data_prefix=dict(img_path='rgb_anon/train'),
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(960, 540), keep_ratio=True),
        dict(type='RandomCrop', crop_size=(512, 512)),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackUDAInputs'),
    ])
acdc_target_hr = dict(acdc_target, pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1920, 1080), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(1024, 1024)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackUDAInputs'),
])
acdc_val = dict(
    acdc,
    data_prefix=dict(img_path='rgb_anon/val', seg_map_path='gt/val'),
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(960, 540), keep_ratio=True),
        dict(type='LoadAnnotations'),
        dict(type='PackSegInputs'),
    ])
acdc_val_hr = dict(acdc_val, pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1920, 1080), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
])

# Dark Zurich (Sakaridis et al., ICCV 2019), a UDA target: 1920x1080 drives at night
# (the night part of its train split, without labels; val images with labels,
# Cityscapes classes). Without suffix at DAFormer's 512-px setting (512x512 crops), with
# _hr at HRDA/MIC's high-resolution setting (1024x1024 crops, twice the resize); resize
# scales (w, h) of lhoyer/MIC.
darkzurich = dict(type='CheckedDarkZurichDataset', data_root='data/dark_zurich')
darkzurich_target = dict(
    darkzurich,
    data_prefix=dict(img_path='rgb_anon/train/night'),
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(960, 540), keep_ratio=True),
        dict(type='RandomCrop', crop_size=(512, 512)),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackUDAInputs'),
    ])
darkzurich_target_hr = dict(darkzurich_target, pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1920, 1080), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(1024, 1024)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackUDAInputs'),
])
darkzurich_val = dict(
    darkzurich,
    data_prefix=dict(img_path='rgb_anon/val', seg_map_path='gt/val'),
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(960, 540), keep_ratio=True),
        dict(type='LoadAnnotations'),
        dict(type='PackSegInputs'),
    ])
darkzurich_val_hr = dict(darkzurich_val, pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1920, 1080), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
])

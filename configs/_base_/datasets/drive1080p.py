# The pipelines of a 1920x1080 driving target (ACDC, Dark Zurich: acdc.py,
# darkzurich.py): DAFormer's 512-px setting (half-size resize, 512x512 crops) and
# HRDA/MIC's high-resolution setting (_hr: full size, 1024x1024 crops); resize scales
# (w, h) of lhoyer/MIC. Target training images carry no labels; val images do.
drive1080p_target_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(960, 540), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(512, 512)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackUDAInputs'),
]
drive1080p_target_pipeline_hr = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1920, 1080), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(1024, 1024)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackUDAInputs'),
]
drive1080p_val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(960, 540), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
drive1080p_val_pipeline_hr = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1920, 1080), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]

# GTA5 (Richter et al., ECCV 2016), a UDA source: synthetic 1914x1052 frames with labels.
# gta_source at DAFormer's 512-px setting (512x512 crops), gta_source_hr at HRDA/MIC's
# high-resolution setting (1024x1024 crops, twice the resize). Resize scales (w, h) of
# lhoyer/MIC (mmseg 0.x img_scale with keep_ratio -> Resize(scale=(w, h),
# keep_ratio=True)); normalisation and padding live in the model's data preprocessor.
gta = dict(type='GTADataset', data_root='data/gta')
gta_source = dict(
    gta,
    data_prefix=dict(img_path='images', seg_map_path='labels'),
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='Resize', scale=(1280, 720), keep_ratio=True),
        dict(type='RandomCrop', crop_size=(512, 512), cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputs'),
    ])
gta_source_hr = dict(gta_source, pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=(2560, 1440), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(1024, 1024), cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
])

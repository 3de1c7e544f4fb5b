# SYNTHIA-RAND-CITYSCAPES (Ros et al., CVPR 2016), a UDA source: synthetic 1280x760
# frames with labels. synthia_source at DAFormer's 512-px setting (512x512 crops),
# synthia_source_hr at HRDA/MIC's high-resolution setting (1024x1024 crops, twice the
# resize); resize scales (w, h) of lhoyer/MIC.
synthia = dict(type='SynthiaDataset', data_root='data/synthia')
synthia_source = dict(
    synthia,
    data_prefix=dict(img_path='RGB', seg_map_path='GT/LABELS'),
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='Resize', scale=(1280, 760), keep_ratio=True),
        dict(type='RandomCrop', crop_size=(512, 512), cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputs'),
    ])
synthia_source_hr = dict(synthia_source, pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=(2560, 1520), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(1024, 1024), cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
])
# SYNTHIA labels 16 of the 19 Cityscapes classes: a SYNTHIA-trained model is also
# scored on those 16 (mIoU16) and on the 13 of earlier work (mIoU13).
synthia_evaluator = dict(
    type='SubsetIoUMetric', iou_metrics=['mIoU'],
    subsets=dict(
        mIoU16=['road', 'sidewalk', 'building', 'wall', 'fence', 'pole',
                'traffic light', 'traffic sign', 'vegetation', 'sky', 'person',
                'rider', 'car', 'bus', 'motorcycle', 'bicycle'],
        mIoU13=['road', 'sidewalk', 'building', 'traffic light', 'traffic sign',
                'vegetation', 'sky', 'person', 'rider', 'car', 'bus', 'motorcycle',
                'bicycle']))

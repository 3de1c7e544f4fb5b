# Your own data: a labelled source and an unlabelled target, the class table in this
# file (README "Train on your own data"). Copy it and the method config that reads it
# (configs/custom/daformer_mit_tiny_custom.py), then edit parts 1-3. As given it reads
# the worked example: the procedural benchmark (python tools/generate_benchmark.py) with
# its ten Cityscapes classes merged into five.
#
# Folder layout (Cityscapes-like). Folders are searched recursively, so a level such as
# <city>/ in between is fine; a label has the relative path and name of its image, with
# seg_map_suffix in place of img_suffix:
#   <source_root>/<img_dir>/train/**/<name><img_suffix>      source images
#   <source_root>/<ann_dir>/train/**/<name><seg_map_suffix>  their labels
#   <target_root>/<img_dir>/train/**/<name><img_suffix>      target images, no labels
#   <target_root>/<img_dir>/val/**/<name><img_suffix>        target validation images
#   <target_root>/<ann_dir>/val/**/<name><seg_map_suffix>    their labels
# Labels are single-channel PNGs (8 or 16 bit) of raw label ids (part 2).

# 1. Where the data is.
source_root = 'data/procedural/source'
target_root = 'data/procedural/target'
img_dir = 'leftImg8bit'
ann_dir = 'gtFine'
img_suffix = '_leftImg8bit.png'
seg_map_suffix = '_gtFine_labelTrainIds.png'

# 2. The class table. A class's train id is its position in `classes`; `palette` has
# one RGB colour per class. `label_ids` has the raw id(s) of each class in the label
# files, in the same order, and `ignore_ids` the raw ids of unlabelled pixels (they are
# ignored). A raw id listed nowhere stops --check-data and training with the file
# named. Here: the Cityscapes train ids the procedural generator writes (road 0,
# sidewalk 1 | building 2, pole 5, traffic sign 7 | vegetation 8, terrain 9 | sky 10 |
# person 11, car 13). Labels that hold the train ids 0..N-1 (and 255) already:
# label_ids = None and ignore_ids = [].
classes = ('flat', 'construction', 'nature', 'sky', 'movable')
palette = [[128, 64, 128], [70, 70, 70], [107, 142, 35], [70, 130, 180], [0, 0, 142]]
label_ids = [[0, 1], [2, 5, 7], [8, 9], [10], [11, 13]]
ignore_ids = [255]

# 3. Sizes. Images are resized to fit img_scale (w, h; aspect ratio kept), then
# cropped to crop_size (h, w). The worked example's images are 256x128, trained whole;
# DAFormer on 2048x1024 images: img_scale = (1024, 512), crop_size = (512, 512).
img_scale = (256, 128)
crop_size = (128, 256)

# The rest follows from 1-3.
metainfo = dict(classes=classes, palette=palette)
source_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
target_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackUDAInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
source_train = dict(
    type='CustomSegDataset', data_root=source_root, metainfo=metainfo,
    label_ids=label_ids, ignore_ids=ignore_ids, img_suffix=img_suffix,
    seg_map_suffix=seg_map_suffix, pipeline=source_train_pipeline,
    data_prefix=dict(img_path=img_dir + '/train', seg_map_path=ann_dir + '/train'))
target_train = dict(
    type='CustomSegDataset', data_root=target_root, metainfo=metainfo,
    img_suffix=img_suffix, pipeline=target_train_pipeline,
    data_prefix=dict(img_path=img_dir + '/train'))  # target labels are never read
target_val = dict(
    type='CustomSegDataset', data_root=target_root, metainfo=metainfo,
    label_ids=label_ids, ignore_ids=ignore_ids, img_suffix=img_suffix,
    seg_map_suffix=seg_map_suffix, pipeline=test_pipeline,
    data_prefix=dict(img_path=img_dir + '/val', seg_map_path=ann_dir + '/val'))
train_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='UDADataset', source=source_train, target=target_train))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=target_val)
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# The procedural benchmark for UDA: labelled source train + unlabelled target train, one
# independently drawn pair per item (UDADataset). Validation as in procedural_256x128.py.
_base_ = ['./procedural_256x128.py']
target_train_pipeline = [
    dict(type='LoadImageFromFile'),  # target labels exist on disk but are never read
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackUDAInputs'),
]
target_train = dict(
    type='CityscapesDataset', data_root='data/procedural/target',
    pipeline=target_train_pipeline,
    data_prefix=dict(img_path='leftImg8bit/train'))
train_dataloader = dict(
    batch_size=2,
    dataset=dict(_delete_=True, type='UDADataset', source={{_base_.source_train}},
                 target=target_train))

# The procedural benchmark for UDA: labelled source train + unlabelled target train, one
# independently drawn pair per item (UDADataset). Validation as in procedural_256x128.py.
_base_ = ['./procedural_256x128.py']
target_train = dict(
    type=_base_.dataset_type, data_root=_base_.target_root,
    data_prefix=dict(img_path='leftImg8bit/train'),  # target labels are never read
    pipeline=[dict(type='LoadImageFromFile'), dict(type='RandomFlip', prob=0.5),
              dict(type='PackUDAInputs')])
train_dataloader = dict(
    batch_size=2,
    dataset=dict(_delete_=True, type='UDADataset', source=_base_.source_train,
                 target=target_train))

# GTA -> Cityscapes, DAFormer's 512-px setting: 512x512 crops. The datasets are described
# in gta.py and cityscapes.py, the loaders, evaluator and loops in uda_loaders.py.
_base_ = ['./gta.py', './cityscapes.py', './uda_loaders.py']
crop_size = (512, 512)
source_train = _base_.gta_source
target_train = _base_.cityscapes_target
target_val = _base_.cityscapes_val
train_dataloader = dict(dataset=dict(source=source_train, target=target_train))
val_dataloader = dict(dataset=target_val)
test_dataloader = val_dataloader
# The pipelines under their own names too (tools/infer.py reads test_pipeline).
source_train_pipeline = source_train['pipeline']
target_train_pipeline = target_train['pipeline']
test_pipeline = target_val['pipeline']

# SYNTHIA -> Cityscapes, DAFormer's 512-px setting: 512x512 crops. The datasets are
# described in synthia.py and cityscapes.py, the loaders, evaluator and loops in
# uda_loaders.py; the evaluator also reports SYNTHIA's 16 (and 13) classes.
_base_ = ['./synthia.py', './cityscapes.py', './uda_loaders.py']
crop_size = (512, 512)
source_train = _base_.synthia_source
target_train = _base_.cityscapes_target
target_val = _base_.cityscapes_val
train_dataloader = dict(dataset=dict(source=source_train, target=target_train))
val_dataloader = dict(dataset=target_val)
test_dataloader = val_dataloader
val_evaluator = _base_.synthia_evaluator
test_evaluator = val_evaluator
# The pipelines under their own names too (tools/infer.py reads test_pipeline).
source_train_pipeline = source_train['pipeline']
target_train_pipeline = target_train['pipeline']
test_pipeline = target_val['pipeline']

# Cityscapes -> Dark Zurich, DAFormer's 512-px setting: 512x512 crops. The datasets are
# described in cityscapes.py and darkzurich.py, the loaders, evaluator and loops in
# uda_loaders.py.
_base_ = ['./cityscapes.py', './darkzurich.py', './uda_loaders.py']
crop_size = (512, 512)
source_train = _base_.cityscapes_source
target_train = _base_.darkzurich_target
target_val = _base_.darkzurich_val
train_dataloader = dict(dataset=dict(source=source_train, target=target_train))
val_dataloader = dict(dataset=target_val)
test_dataloader = val_dataloader
# The pipelines under their own names too (tools/infer.py reads test_pipeline).
source_train_pipeline = source_train['pipeline']
target_train_pipeline = target_train['pipeline']
test_pipeline = target_val['pipeline']

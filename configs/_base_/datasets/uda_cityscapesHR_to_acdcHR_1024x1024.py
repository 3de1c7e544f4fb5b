# Cityscapes -> ACDC, HRDA/MIC's high-resolution setting: 1024x1024 crops. The 512-px
# pair with its datasets' _hr forms (twice the resizes).
_base_ = ['./uda_cityscapes_to_acdc_512x512.py']
crop_size = (1024, 1024)
source_train = _base_.cityscapes_source_hr
target_train = _base_.acdc_target_hr
target_val = _base_.acdc_val_hr
train_dataloader = dict(dataset=dict(source=source_train, target=target_train))
val_dataloader = dict(dataset=target_val)
test_dataloader = val_dataloader
source_train_pipeline = source_train['pipeline']
target_train_pipeline = target_train['pipeline']
test_pipeline = target_val['pipeline']

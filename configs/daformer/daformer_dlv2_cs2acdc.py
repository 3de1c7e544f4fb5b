# DAFormer self-training with DeepLabV2 (ResNet-101, 'dlv2red'), Cityscapes -> ACDC (no
# row cropping).
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/models/deeplabv2red_r101.py',
    '../_base_/datasets/uda_cityscapes_to_acdc_512x512.py',
    '../_base_/schedules/adamw_poly10warm_40k.py',
    '../_base_/uda/dacs.py',
]
model = dict(_delete_=True, **_base_.uda, segmentor=_base_.model)
model.update(pseudo_weight_ignore_top=0, pseudo_weight_ignore_bottom=0)
train_dataloader = dict(dataset=dict(rare_class_sampling=_base_.rare_class_sampling))
randomness = dict(seed=0)

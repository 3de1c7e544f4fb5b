# HRDA (MiT-B5 + DAFormer heads at two resolutions), GTA -> Cityscapes, 1024 px; paper: 73.8 mIoU.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/models/hrda_daformer_mitb5.py',
    '../_base_/datasets/uda_gtaHR_to_cityscapesHR_1024x1024.py',
    '../_base_/schedules/adamw_poly10warm_40k.py',
    '../_base_/uda/dacs.py',
]
model = dict(_delete_=True, **_base_.uda, segmentor=_base_.model)
# No row cropping: HRDA masks the target's pseudo-label margins in the data pipeline
# (crop_pseudo_margins, Cityscapes targets only).
model.update(pseudo_weight_ignore_top=0, pseudo_weight_ignore_bottom=0)
# Rare class sampling with min_crop_ratio 2.0: HRDA's crops have 4x DAFormer's pixels.
train_dataloader = dict(dataset=dict(
    rare_class_sampling=dict(_base_.rare_class_sampling, min_crop_ratio=2.0)))
randomness = dict(seed=1)

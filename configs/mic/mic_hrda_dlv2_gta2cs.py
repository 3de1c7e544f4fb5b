# MIC(HRDA, DeepLabV2), GTA -> Cityscapes; paper: 64.2 mIoU.
_base_ = ['../hrda/hrda_dlv2_gta2cs.py', '../_base_/uda/mic.py']
model = dict(plugins=[_base_.mic])
randomness = dict(seed=2)

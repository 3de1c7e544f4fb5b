# MIC(HRDA, MiT-B5), SYNTHIA -> Cityscapes; paper: 67.3 mIoU (16 cl.).
_base_ = ['../hrda/hrda_mitb5_synthia2cs.py', '../_base_/uda/mic.py']
model = dict(plugins=[_base_.mic])
randomness = dict(seed=2)

# MIC(HRDA, DeepLabV2), SYNTHIA -> Cityscapes (not in MIC's paper: its GTA settings);
# paper (DiDA table): 62.4 mIoU (16 cl.).
_base_ = ['../hrda/hrda_dlv2_synthia2cs.py', '../_base_/uda/mic.py']
model = dict(plugins=[_base_.mic])
randomness = dict(seed=2)

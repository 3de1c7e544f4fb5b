# MIC(HRDA, MiT-B5), GTA -> Cityscapes: masked colour-augmented target images, 64 px
# blocks, ratio 0.7; paper: 75.5 mIoU.
_base_ = ['../hrda/hrda_mitb5_gta2cs.py', '../_base_/uda/mic.py']
model = dict(plugins=[_base_.mic])
randomness = dict(seed=2)

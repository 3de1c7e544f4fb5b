# MIC (Hoyer et al., CVPR 2023) as a plug-in of the DACS step: the colour-augmented
# target image with 70% of its 64x64 blocks masked (HRDA's 1024 crops; 32 at DAFormer's
# 512), the student's own loss against the step's pseudo labels and confidence weights,
# lambda_M = 1. Use (a UDA config's model comes from its other base):
#   _base_ = ['../hrda/<baseline>.py', '../_base_/uda/mic.py']
#   model = dict(plugins=[_base_.mic])
mic = dict(
    type='MIC',
    mask_ratio=0.7,
    mask_block_size=64,
    loss_weight=1.0,
    images='target',  # CS->ACDC: 'source_and_target' (MIC's 'separate')
    color_augmentation=True)  # CS->ACDC: False

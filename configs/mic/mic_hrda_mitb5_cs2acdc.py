# MIC(HRDA, MiT-B5), Cityscapes -> ACDC: MIC's 'separate' mode for this benchmark (one
# source image with labels and one target image with pseudo labels masked, no colour
# augmentation); paper: 69.8 mIoU.
_base_ = ['../hrda/hrda_mitb5_cs2acdc.py', '../_base_/uda/mic.py']
model = dict(plugins=[
    dict(_base_.mic, images='source_and_target', color_augmentation=False)])
randomness = dict(seed=2)

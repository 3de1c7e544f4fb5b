# MIC(HRDA) on the procedural benchmark at twice its resolution (CPU): masked,
# colour-augmented target images, ratio 0.7, 16 px blocks (MIC's 64 px of a
# 1024-px-high crop, scaled to this 256-px-high one).
_base_ = ['./hrda_mit_tiny_procedural.py', '../_base_/uda/mic.py']
model = dict(plugins=[dict(_base_.mic, mask_block_size=16)])

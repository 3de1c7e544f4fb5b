# Variant (issue 17): MIC's mask blocks of 32 px instead of the benchmark's 16 (MIC's
# 64 px of a 1024-px crop is 16 at this 256-px-high image; 32 is DAFormer-size's ratio).
_base_ = ['../mic_hrda_mit_tiny_procedural.py']
model = dict(plugins=[dict(_base_.model.plugins[0], mask_block_size=32)])

# Variant (issue 17, candidate 5): MIC's masked pass uses batch statistics but leaves
# the running statistics inference uses unchanged (the original MIC updates them).
_base_ = ['../mic_hrda_mit_tiny_procedural.py']
model = dict(plugins=[dict(_base_.model.plugins[0], update_norm_stats=False)])

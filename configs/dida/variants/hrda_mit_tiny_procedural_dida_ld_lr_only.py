# Variant (issue 17): L_D on HRDA's LR context only (its LR prediction against the whole
# label map); the detail crop and the scale attention get no L_D (h' still reads the
# detail crop for L_R).
_base_ = ['../hrda_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'ld_scale_weights': dict(lr=1.0)}])

# Variant (issue 17, candidate 1): HRDA's scale attention gets no gradient from DiDA's
# degraded passes; it learns which scale to trust from clean images only.
_base_ = ['../hrda_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida,
                       'degraded_frozen_modules': ['decode_head.scale_attention']}])

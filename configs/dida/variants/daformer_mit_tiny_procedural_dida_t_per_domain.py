# Variant (issue 28, reading 4): t drawn per domain (source image i and target image i
# no longer share t), Eq. 1 unchanged.
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[dict(_base_.dida,
                           degradation=dict(_base_.dida.degradation, share_t=False))])

# Variant (the project's earlier behaviour, for measurement only): the degraded passes
# also move the student's BatchNorm running statistics, which inference and the
# exported model use, and eps is drawn at 1/4 resolution.
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'update_norm_stats': True, 'degradation': {
    **_base_.dida.degradation, 'noise_downsample': 4}}])

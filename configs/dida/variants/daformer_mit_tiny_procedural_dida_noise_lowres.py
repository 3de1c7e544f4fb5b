# Variant: eps drawn at 1/4 resolution and upsampled (the authors' earlier code) instead
# of per pixel (the paper's Eq. 1, the default).
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'degradation': {
    **_base_.dida.degradation, 'noise_downsample': 4}}])

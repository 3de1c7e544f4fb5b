# Variant (issue 17, candidate 1): each view degraded at its own resolution (HRDA's LR
# context and detail crop both get unit-variance eps at the same t) instead of the full
# image degraded before the context is downscaled (which keeps ~1/4 of the noise
# variance in the context).
_base_ = ['../hrda_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'noise_per_view': True}])

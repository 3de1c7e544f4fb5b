# Variant: each degraded image's L_D terms weighted by abar_t (1 for a clean image, 0
# for pure noise: images whose objects the noise erased carry no weight).
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'ld_t_weight': 'abar'}])

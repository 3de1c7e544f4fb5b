# Variant (issue 17): L_D only on degraded images with t < 50 (abar_t > 0.5); L_R on
# every t.
_base_ = ['../hrda_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'ld_max_t': 50}])

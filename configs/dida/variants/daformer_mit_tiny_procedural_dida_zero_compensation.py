# Variant: the compensation starts at z_hat = 0 (FiLM with scale + 1 = 0 and shift 0 at
# step 0; Eq. 4 unchanged), so the fused features start as g(x_t) instead of ~2 g(x_t).
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'compensation_init': 'zero'}])

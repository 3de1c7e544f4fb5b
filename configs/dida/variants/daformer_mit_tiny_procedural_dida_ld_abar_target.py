# Variant (issue 28, reading 4): only L_D's target term weighted by abar_t (its
# pseudo labels come from the clean image; the noise erases the target's class signal
# at lower t than the source's); the source term as in the paper.
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'ld_t_weight': 'abar', 'ld_t_weight_on': 'target'}])

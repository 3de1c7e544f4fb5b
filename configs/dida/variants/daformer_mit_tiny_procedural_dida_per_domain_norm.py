# Variant (issue 28, reading 2): the degraded pass normalises the degraded source and
# the degraded target images with their own BatchNorm batch statistics (the head's BN
# here), as the authors' earlier code, which ran the domains separately, did.
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'degraded_norm': 'per_domain'}])

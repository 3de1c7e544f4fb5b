# Variant: no h' and no L_R (lambda_R = 0); g' and L_D as in the full method.
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'recon': None}])

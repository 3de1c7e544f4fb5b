# Variant: lambda_R = 1 (the paper's CNN value) instead of 5 (its MiT value).
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'lambda_r': 1.0}])

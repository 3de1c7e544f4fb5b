# Variant: the loss balance of the authors' earlier code: clean losses x 0.75, degraded
# CE x 0.25 per domain, noise MSE x 5 per domain. Under AdamW (invariant to a common
# scale of all gradients) that is L_S + L_T + (0.25 / 0.75) * CE_deg per domain
# + (2 * 5 / 0.75) * mean-over-domains MSE: lambda_D = 1/3, lambda_R = 40/3.
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'lambda_d': 1 / 3, 'lambda_r': 40 / 3}])

# Variant (issue 28, reading 3): L_R's target is the area-pooled eps rescaled to unit
# variance (x4 at stride 4), as the authors' earlier code's h' predicted unit-variance
# noise.
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'recon_target': 'unit_variance'}])

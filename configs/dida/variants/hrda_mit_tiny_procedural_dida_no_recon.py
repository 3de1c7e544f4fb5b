# Variant (issue 17, candidate 4): no h' and no L_R (g' and L_D kept), so no gradient
# from noise prediction on the detail crop reaches the shared encoder.
_base_ = ['../hrda_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'recon': None}])

# Ablation row "L_D only" on the procedural benchmark: degraded images through g, no
# time input, no L_R (paper, GTA->CS: 66.5).
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'mode': 'none', 'recon': None}])

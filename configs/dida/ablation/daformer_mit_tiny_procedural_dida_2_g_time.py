# Ablation row "+ time embedding in g" on the procedural benchmark: time FiLM on g's
# levels, no g', no L_R (paper, GTA->CS: 69.5).
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'mode': 'g_time', 'recon': None}])

# Ablation row "+ L_R" on the procedural benchmark: the noise read from the shared
# features by a 1x1 probe (no separate h'), time FiLM on g, no g' (paper: 69.4).
_base_ = ['../daformer_mit_tiny_procedural_dida.py']
model = dict(plugins=[{**_base_.dida, 'mode': 'g_time', 'recon': 'linear'}])

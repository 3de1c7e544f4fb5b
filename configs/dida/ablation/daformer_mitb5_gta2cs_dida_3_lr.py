# Ablation row "+ L_R" (paper: 69.4): reconstruction read from the shared features by a
# 1x1 probe (no separate h'), time FiLM on g, no g'.
_base_ = ['../daformer_mitb5_gta2cs_dida.py']
model = dict(plugins=[{**_base_.dida_mitb5, 'mode': 'g_time', 'recon': 'linear'}])

# Ablation row "L_D + time embedding in g" (paper: 69.5): FiLM_t on g's features, no g'.
_base_ = ['../daformer_mitb5_gta2cs_dida.py']
model = dict(plugins=[{**_base_.dida_mitb5, 'mode': 'g_time', 'recon': None}])

# Ablation row "+ h'" (paper: 69.9): separate reconstruction head h', no g'.
_base_ = ['../daformer_mitb5_gta2cs_dida.py']
model = dict(plugins=[{**_base_.dida_mitb5, 'mode': 'g_time', 'recon': 'full'}])

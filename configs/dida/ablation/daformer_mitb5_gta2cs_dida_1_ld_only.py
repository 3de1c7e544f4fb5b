# Ablation row "L_D only" (paper: 66.5 mIoU): degraded images through g, no time input,
# no L_R.
_base_ = ['../daformer_mitb5_gta2cs_dida.py']
model = dict(plugins=[{**_base_.dida_mitb5, 'mode': 'none', 'recon': None}])

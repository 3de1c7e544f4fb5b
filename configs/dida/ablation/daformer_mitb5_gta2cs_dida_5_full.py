# Ablation row "+ g' (full DiDA)" (paper: 70.3): identical to daformer_mitb5_gta2cs_dida.
_base_ = ['../daformer_mitb5_gta2cs_dida.py']

# DAFormer (MiT-B5) + DiDA, gta2cs.
_base_ = ['../daformer/daformer_mitb5_gta2cs.py', '../_base_/uda/dida.py']

# DAFormer (MiT-B5) + DiDA, cs2acdc.
_base_ = ['../daformer/daformer_mitb5_cs2acdc.py', '../_base_/uda/dida.py']
model = dict(plugins=[_base_.dida_mitb5])
custom_hooks = [*_base_.uda_hooks, _base_.dida_hook]

# DAFormer (MiT-B5) + DiDA, synthia2cs.
_base_ = ['../daformer/daformer_mitb5_synthia2cs.py', '../_base_/uda/dida.py']
model = dict(plugins=[_base_.dida_mitb5])
custom_hooks = [*_base_.uda_hooks, _base_.dida_hook]

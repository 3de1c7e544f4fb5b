# DAFormer self-training with DeepLabV2 (ResNet-101) + DiDA, synthia2cs: lambda_R = 1 (CNN).
_base_ = ['../daformer/daformer_dlv2_synthia2cs.py', '../_base_/uda/dida.py']
model = dict(plugins=[{**_base_.dida, 'lambda_r': 1.0}])
custom_hooks = [*_base_.uda_hooks, _base_.dida_hook]

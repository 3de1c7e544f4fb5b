# DAFormer self-training with DeepLabV2 (ResNet-101) + DiDA, cs2acdc: lambda_R = 1 (CNN).
_base_ = ['../daformer/daformer_dlv2_cs2acdc.py', '../_base_/uda/dida.py']
model = dict(plugins=[dict(type='DiDA', lambda_d=0.5, lambda_r=1.0)])

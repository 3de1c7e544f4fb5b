# MIC(HRDA, DeepLabV2) + DiDA, synthia2cs: two plug-ins, MIC then DiDA; lambda_R = 1 (CNN).
_base_ = ['../mic/mic_hrda_dlv2_synthia2cs.py', '../_base_/uda/dida.py']
model = dict(plugins=[*_base_.model.plugins, dict(_base_.dida, lambda_r=1.0)])
# DiDAHook's degraded-path diagnostics measure a single-scale head: off for HRDA.
custom_hooks = [*_base_.uda_hooks, dict(_base_.dida_hook, diag_interval=0)]

# HRDA (MiT-B5) + DiDA, cs2acdc: the degraded passes go through HRDA's two
# resolutions and its own losses.
_base_ = ['../hrda/hrda_mitb5_cs2acdc.py', '../_base_/uda/dida.py']
model = dict(plugins=[_base_.dida_mitb5])
# DiDAHook's degraded-path diagnostics measure a single-scale head: off for HRDA.
custom_hooks = [*_base_.uda_hooks, dict(_base_.dida_hook, diag_interval=0)]

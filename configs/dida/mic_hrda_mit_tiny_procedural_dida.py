# MIC(HRDA) + DiDA on the procedural benchmark at twice its resolution (small MiT,
# CPU): two plug-ins, MIC then DiDA.
_base_ = ['../benchmark/mic_hrda_mit_tiny_procedural.py', '../_base_/uda/dida.py']
model = dict(plugins=[*_base_.model.plugins, _base_.dida])
# DiDAHook's degraded-path diagnostics measure a single-scale head: off for HRDA.
custom_hooks = [*_base_.uda_hooks,
                dict(_base_.dida_hook, vis_interval=1000, diag_interval=0)]

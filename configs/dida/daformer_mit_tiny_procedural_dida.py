# DAFormer + DiDA on the procedural benchmark (small MiT, CPU): the README's main run.
_base_ = ['../benchmark/daformer_mit_tiny_procedural.py', '../_base_/uda/dida.py']
model = dict(plugins=[_base_.dida])
custom_hooks = [*_base_.uda_hooks,
                {**_base_.dida_hook, 'vis_interval': 1000, 'diag_interval': 100}]

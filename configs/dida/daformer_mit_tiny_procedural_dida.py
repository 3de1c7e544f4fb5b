# DAFormer + DiDA on the procedural benchmark (small MiT, CPU): the README's main run.
_base_ = ['../benchmark/daformer_mit_tiny_procedural.py', '../_base_/uda/dida.py']
custom_hooks = [dict(type='DiDAHook', vis_interval=1000, save_deploy=True)]

# Source-only on the procedural benchmark in the pretrained regime (formula-pretrained
# encoder, DAFormer's learning rates; see _base_/regimes/formula_pretrained.py).
_base_ = ['./source_only_mit_tiny_procedural.py',
          '../_base_/regimes/formula_pretrained.py']
model = dict(backbone=dict(init_cfg=_base_.formula_init))
optim_wrapper = _base_.finetune_optim_wrapper

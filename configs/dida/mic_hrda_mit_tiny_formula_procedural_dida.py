# MIC(HRDA) + DiDA on the procedural benchmark in the pretrained regime: its random-init
# config with the formula-pretrained encoder (g' starts as its copy), the feature
# distance on and DAFormer's learning rates (_base_/regimes/formula_pretrained.py).
_base_ = ['./mic_hrda_mit_tiny_procedural_dida.py',
          '../_base_/regimes/formula_pretrained.py']
model = dict(segmentor=dict(backbone=dict(init_cfg=_base_.formula_init)),
             imnet_feature_dist_lambda=_base_.imnet_feature_dist_lambda)
optim_wrapper = _base_.finetune_optim_wrapper

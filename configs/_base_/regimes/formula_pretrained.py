# The procedural benchmark's "pretrained" regime: what every method of the DAFormer /
# HRDA / MIC / DiDA papers starts from, at the benchmark's scale and without natural
# images. A config of this regime is its random-init ("scratch") twin plus
#   model.(segmentor.)backbone.init_cfg = formula_init       (g starts pretrained;
#                                          DiDA's g' is g's copy, as always)
#   model.imnet_feature_dist_lambda = imnet_feature_dist_lambda (UDA configs)
#   optim_wrapper = finetune_optim_wrapper
# formula_init: the small MiT's encoder pretrained on formula-driven images (IFS
# fractal categories, tools/pretrain_formula.py; pretrained/README.md gives the command
# that rebuilds the file, its size and SHA-256), loaded with the same strict check as
# MiT-B5's ImageNet weights. The feature distance's frozen reference is the
# pretrained student before training (DACS's ImageNet model), on DAFormer's thing
# classes (on this benchmark: sign, person, car), lambda 0.005 as in DAFormer.
# DAFormer's learning rates: 6e-5 for the encoder, x10 for the heads.
formula_init = dict(
    type='CheckedPretrained',
    checkpoint='{{ fileDirname }}/../../../pretrained/mit_tiny_formula.pth')
imnet_feature_dist_lambda = 0.005
finetune_optim_wrapper = dict(
    optimizer=dict(lr=6e-5),
    paramwise_cfg=dict(custom_keys=dict(head=dict(lr_mult=10.0))))

# DACS self-training as configured by DAFormer (Hoyer et al., CVPR 2022) for GTA->CS:
# EMA teacher (alpha 0.999), confidence-weighted pseudo labels (tau 0.968) with the top
# 15 / bottom 120 rows ignored, ClassMix + colour jitter (0.2, applied 80%) + blur,
# ImageNet feature distance on thing classes (lambda 0.005), rare class sampling.
# A method config wraps its segmentor (the model base) with one line:
#   model = dict(_delete_=True, **_base_.uda, segmentor=_base_.model)
# and plug-ins (MIC, DiDA, ...) go to model.plugins.
uda = dict(
    type='DACS',
    source_only=False,
    alpha=0.999,
    pseudo_threshold=0.968,
    pseudo_weight_ignore_top=15,
    pseudo_weight_ignore_bottom=120,
    color_jitter_strength=0.2,
    color_jitter_probability=0.2,
    blur=True,
    imnet_feature_dist_lambda=0.005,
    imnet_feature_dist_classes=[6, 7, 11, 12, 13, 14, 15, 16, 17, 18],
    imnet_feature_dist_scale_min_ratio=0.75,
    plugins=[])
# Rare class sampling of the source (DAFormer); method configs put it into
# train_dataloader.dataset.rare_class_sampling.
rare_class_sampling = dict(class_temp=0.01, min_pixels=3000, min_crop_ratio=0.5)
# Multi-GPU: the step has several backward passes, so gradients are averaged once by
# this wrapper (mmengine's DDP wrapper would bypass DACS.train_step); BN layers become
# SyncBN when (and only when) training is distributed.
model_wrapper_cfg = dict(type='UDADistributedWrapper')
sync_bn = 'torch'
# Pictures of what a step sees (source/target images, pseudo labels with their
# confidence and weights, the ClassMix image and label, plug-ins' images such as MIC
# masks) to the visualiser's backends every `interval` iterations; and per-class
# pseudo-label fractions (with their IoU against the target's training labels where
# those exist) every 500 iterations, to <work_dir>/pseudo_label_stats.jsonl and the
# log. A config that sets its own custom_hooks keeps them with
# custom_hooks = [*_base_.uda_hooks, ...].
uda_vis_hook = dict(type='UDAVisualizationHook', interval=1000, max_images=2)
pseudo_label_hook = dict(type='PseudoLabelStatsHook', interval=500)
uda_hooks = [uda_vis_hook, pseudo_label_hook]
custom_hooks = uda_hooks

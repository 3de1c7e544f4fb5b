_base_ = ['./default_hooks.py']
# DAFormer's optimiser and schedule (Hoyer et al., CVPR 2022, Sec. 4.1; original
# configs/_base_/schedules/{adamw,poly10warm}.py): AdamW lr 6e-5, betas (0.9, 0.999),
# weight decay 0.01, decode head lr x10, no weight decay on position blocks and norms;
# 40k iterations, linear warmup over 1500 iterations from 1e-6 * lr.
#
# Norms: mmcv-1.x 'norm' matched every LayerNorm of the original MiT (norm1, norm2,
# attn.norm, patch_embed*.norm, stage norms norm1..norm4). In mmseg 1.x's
# MixVisionTransformer the stage norms are named layers.{i}.2, so they get their own
# keys (first match of the longest key wins in mmengine; no other parameter of MiT,
# ResNet or the heads contains 'layers.{i}.2.'). 'pos_block' matches nothing in MiT
# (kept from the original for backbones that have one).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-05, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        custom_keys={
            'head': dict(lr_mult=10.0),
            'pos_block': dict(decay_mult=0.0),
            'norm': dict(decay_mult=0.0),
            'layers.0.2.': dict(decay_mult=0.0),
            'layers.1.2.': dict(decay_mult=0.0),
            'layers.2.2.': dict(decay_mult=0.0),
            'layers.3.2.': dict(decay_mult=0.0),
        }))
# mmcv 1.x 'poly' + linear warmup computed, at iteration it (0-based),
#   lr(it) = lr * (1 - it / 40000) ** 1.0 * w(it),
#   w(it) = 1 - (1 - it / 1500) * (1 - 1e-6) for it < 1500, else 1.
# Overlapping (both begin at 0) LinearLR and PolyLR multiply to exactly this
# (tests/test_engine/test_schedule.py). mmengine reaches a scheduler's end value at
# iteration end - 1 (total_iters = end - begin - 1), hence end=1501 and end=40001;
# end=1500/40000 would run the warmup 1/1500 faster and reach lr 0 one iteration
# early. mmseg's usual sequential form (poly beginning at 1500) differs by ~4%.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1501),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=40001),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
# every 4000 iterations and, between them, every 30 minutes (only the newest
# timed copy is kept): a hard kill loses at most half an hour of GPU time
default_hooks = dict(checkpoint=dict(interval=4000, time_interval=30))

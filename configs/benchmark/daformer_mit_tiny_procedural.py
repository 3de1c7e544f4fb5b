# DAFormer self-training (DACS) on the procedural benchmark with the small MiT (CPU):
# the source-only baseline's model and schedule, the UDA data and the DACS step.
# Random-init model, so no ImageNet feature distance; 128-px high images, so no row
# cropping.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/uda_procedural_256x128.py',
    '../_base_/models/benchmark_mit_tiny.py',
    '../_base_/schedules/benchmark_adamw_4k.py',
    '../_base_/uda/dacs.py',
]
model = dict(_delete_=True, **_base_.uda, segmentor=_base_.model)
model.update(pseudo_weight_ignore_top=0, pseudo_weight_ignore_bottom=0,
             imnet_feature_dist_lambda=0.0)
sync_bn = None  # CPU multi-process runs: torch's SyncBN needs CUDA
randomness = dict(seed=0)

# HRDA self-training (DACS) on the procedural benchmark at twice its resolution with
# the small MiT (CPU): DAFormer's benchmark config with HRDA's two resolutions (see
# _base_/models/hrda_benchmark_mit_tiny.py for the crop sizes and why). Seed 0, as the
# DAFormer benchmark run it is compared with.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/uda_procedural_hr_512x256.py',
    '../_base_/models/hrda_benchmark_mit_tiny.py',
    '../_base_/schedules/benchmark_adamw_4k.py',
    '../_base_/uda/dacs.py',
]
model = dict(_delete_=True, **_base_.uda, segmentor=_base_.model)
model.update(pseudo_weight_ignore_top=0, pseudo_weight_ignore_bottom=0,
             imnet_feature_dist_lambda=0.0)
sync_bn = None  # CPU multi-process runs: torch's SyncBN needs CUDA
randomness = dict(seed=0)

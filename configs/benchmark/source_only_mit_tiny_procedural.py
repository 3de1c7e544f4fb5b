# Source-only baseline on the procedural benchmark: train on source, test on target.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/procedural_256x128.py',
    '../_base_/models/benchmark_mit_tiny.py',
    '../_base_/schedules/benchmark_adamw_4k.py',
]
randomness = dict(seed=0)

# DAFormer self-training (DACS) on your own data: the class table, folders and sizes of
# ../_base_/datasets/uda_custom_template.py (README "Train on your own data") and the
# small random-init MiT of the procedural benchmark, which trains on a CPU. Copy this
# file with the template and point its first _base_ entry at your copy.
#
# Real images on a GPU: DAFormer's model and schedule instead of the small ones,
#   '../_base_/models/daformer_mitb5.py', '../_base_/schedules/adamw_poly10warm_40k.py'
# (ImageNet MiT-B5 weights, see README "Install"), and imnet_feature_dist_lambda=0.005.
_base_ = [
    '../_base_/datasets/uda_custom_template.py',
    '../_base_/default_runtime.py',
    '../_base_/models/benchmark_mit_tiny.py',
    '../_base_/schedules/benchmark_adamw_4k.py',
    '../_base_/uda/dacs.py',
]
model = dict(_delete_=True, **_base_.uda, segmentor=_base_.model)
model.update(
    # DAFormer ignores the pseudo labels of the top 15 and bottom 120 rows of
    # Cityscapes targets (the ego car's bonnet); 0 keeps every row.
    pseudo_weight_ignore_top=0, pseudo_weight_ignore_bottom=0,
    # ImageNet feature distance (lambda_FD): off for a random-init backbone; with
    # ImageNet weights 0.005 on the train ids of your "thing" classes (here movable).
    imnet_feature_dist_lambda=0.0, imnet_feature_dist_classes=[4])
model['segmentor']['decode_head']['num_classes'] = len(_base_.classes)
model['segmentor']['data_preprocessor']['size'] = _base_.crop_size
# Rare class sampling (DAFormer): counts of the class pixels of the source labels,
# written once into the source data_root by
#   python tools/convert_datasets/rcs_stats.py --config <this config>
# (or switch it off: rare_class_sampling=None). DAFormer's min_pixels=3000 is for
# 512x512 crops; 375 is the same share of the worked example's 256x128 crops.
train_dataloader = dict(dataset=dict(
    rare_class_sampling=dict(_base_.rare_class_sampling, min_pixels=375)))
sync_bn = None  # CPU multi-process runs: torch's SyncBN needs CUDA
randomness = dict(seed=0)

# Source-only baseline of daformer_mitb5_cs2acdc: the source loss L_S only (no teacher,
# mixing,
# feature distance or rare class sampling); evaluated on the same target.
_base_ = ['./daformer_mitb5_cs2acdc.py']
model = dict(source_only=True, imnet_feature_dist_lambda=0.0)
train_dataloader = dict(dataset=dict(rare_class_sampling=None))

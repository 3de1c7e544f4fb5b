# Dark Zurich (Sakaridis et al., ICCV 2019), a UDA target: 1920x1080 drives at night
# (the night part of its train split, without labels; val images with labels,
# Cityscapes classes). Without suffix at DAFormer's 512-px setting, with _hr at
# HRDA/MIC's high-resolution setting (the pipelines of drive1080p.py).
_base_ = ['./drive1080p.py']
darkzurich = dict(type='CheckedDarkZurichDataset', data_root='data/dark_zurich')
darkzurich_target = dict(darkzurich, data_prefix=dict(img_path='rgb_anon/train/night'),
                         pipeline=_base_.drive1080p_target_pipeline)
darkzurich_target_hr = dict(darkzurich_target,
                            pipeline=_base_.drive1080p_target_pipeline_hr)
darkzurich_val = dict(darkzurich,
                      data_prefix=dict(img_path='rgb_anon/val', seg_map_path='gt/val'),
                      pipeline=_base_.drive1080p_val_pipeline)
darkzurich_val_hr = dict(darkzurich_val, pipeline=_base_.drive1080p_val_pipeline_hr)

# ACDC (Sakaridis et al., ICCV 2021), a UDA target: 1920x1080 drives in fog, night, rain
# and snow; train images without labels, val images with labels (Cityscapes classes).
# Without suffix at DAFormer's 512-px setting, with _hr at HRDA/MIC's high-resolution
# setting (the pipelines of drive1080p.py).
_base_ = ['./drive1080p.py']
acdc = dict(type='ACDCDataset', data_root='data/acdc')
acdc_target = dict(acdc, data_prefix=dict(img_path='rgb_anon/train'),
                   pipeline=_base_.drive1080p_target_pipeline)
acdc_target_hr = dict(acdc_target, pipeline=_base_.drive1080p_target_pipeline_hr)
acdc_val = dict(acdc, data_prefix=dict(img_path='rgb_anon/val', seg_map_path='gt/val'),
                pipeline=_base_.drive1080p_val_pipeline)
acdc_val_hr = dict(acdc_val, pipeline=_base_.drive1080p_val_pipeline_hr)

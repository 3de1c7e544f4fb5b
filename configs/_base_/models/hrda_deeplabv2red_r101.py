# HRDA (Hoyer et al., ECCV 2022) with DeepLabV2 ('dlv2red', ResNet-101, output stride
# 8): LR context 0.5 + 512x512 detail crop, DeepLabV2 ASPP heads for both and a
# DeepLabV2 ASPP scale attention (HRDA's 'hrda1-512-0.1_dlv2red'); whole-image test
# (HR windows inside, as HRDA's CNN runs). The crop offsets are multiples of 16 =
# output stride 8 / LR scale 0.5, so that the crop falls on the LR output grid (HRDA
# used 8 here and truncated the crop's LR coordinates).
_base_ = ['./deeplabv2red_r101.py']
model = dict(
    type='HRDAEncoderDecoder',
    decode_head=dict(
        _delete_=True,
        type='HRDAHead',
        single_scale_head=_base_.model.decode_head,
        attention_classwise=True,
        hr_loss_weight=0.1,
        lr_loss_weight=0.0),
    scales=(0.5, 1.0),
    hr_crop_size=(512, 512),
    crop_coord_divisible=16,
    feature_scale=0.5,
    hr_slide_inference=True,
    hr_slide_overlapping=True,
    test_cfg=dict(mode='whole'))

# HRDA around the procedural benchmark's small MiT + SegFormer head, for the benchmark
# at twice its resolution (uda_procedural_hr_512x256.py): the whole 256x512 training
# image at scale 0.5 (128x256 = DAFormer's view of the benchmark) + one random
# 128x256 detail crop at full resolution (half of each side, as HRDA's 512 of 1024),
# offsets multiples of 8 (output stride 4 / 0.5); a class-wise scale attention (a
# SegFormer head); losses fused 0.9 + detail 0.1; at inference the LR image plus 3x3
# overlapping detail windows (stride 64x128), whole-image test.
_base_ = ['./benchmark_mit_tiny.py']
model = dict(
    type='HRDAEncoderDecoder',
    data_preprocessor=dict(size=(256, 512)),
    decode_head=dict(
        _delete_=True,
        type='HRDAHead',
        single_scale_head=_base_.model.decode_head,
        attention_classwise=True,
        hr_loss_weight=0.1,
        lr_loss_weight=0.0),
    scales=(0.5, 1.0),
    hr_crop_size=(128, 256),
    crop_coord_divisible=8,
    feature_scale=0.5,
    hr_slide_inference=True,
    hr_slide_overlapping=True,
    test_cfg=dict(mode='whole'))

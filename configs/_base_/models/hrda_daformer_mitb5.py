# HRDA (Hoyer et al., ECCV 2022) with the DAFormer network (MiT-B5 + DAFormer head):
# the whole 1024x1024 training crop at scale 0.5 (context) + one random 512x512 detail
# crop at full resolution, whose offsets are multiples of 8 (output stride 4 / LR
# scale 0.5); DAFormer heads for both and a class-wise scale attention (a DAFormer head
# with a 1x1 fusion, 256 channels); losses fused 0.9 + detail 0.1; feature distance on
# the LR features; overlapping (stride 256) HR windows for pseudo labels and test, and
# an outer batched slide over the test image (1024 windows, stride 512). Values of
# lhoyer/MIC seg/configs/hrda/gtaHR2csHR_hrda.py.
_base_ = ['./daformer_mitb5.py']
model = dict(
    type='HRDAEncoderDecoder',
    decode_head=dict(
        _delete_=True,
        type='HRDAHead',
        single_scale_head=_base_.model.decode_head,
        attention_classwise=True,
        attention_embed_dim=256,
        hr_loss_weight=0.1,
        lr_loss_weight=0.0),
    scales=(0.5, 1.0),
    hr_crop_size=(512, 512),
    crop_coord_divisible=8,
    feature_scale=0.5,
    hr_slide_inference=True,
    hr_slide_overlapping=True,
    test_cfg=dict(mode='slide', batched_slide=True, stride=(512, 512),
                  crop_size=(1024, 1024)))

# DeepLabV2 (Chen et al., TPAMI 2018) as used by DAFormer/HRDA/MIC: ResNetV1c-101 with
# output stride 8 (dilations 1/1/2/4, strides 1/2/1/1, contracted dilation, BN trained,
# norm_eval off) + ASPP classifier with dilations 6/12/18/24, branch logits summed.
# ImageNet weights: open-mmlab://resnet101_v1c prepared with
#   python tools/model_converters/resnet2mmseg.py resnet101_v1c-e67eebb6.pth \
#       pretrained/resnet101_v1c_mmseg.pth
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ResNetV1c',
        depth=101,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True,
        init_cfg=dict(
            type='CheckedPretrained',
            checkpoint='pretrained/resnet101_v1c_mmseg.pth')),
    decode_head=dict(
        type='DLV2Head',
        in_channels=2048,
        in_index=3,
        dilations=(6, 12, 18, 24),
        num_classes=19,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

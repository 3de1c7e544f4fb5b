"""HRDA: crop box maths, sliding windows, scale attention fusion, loss weighting,
slide = whole inference, and the student contract."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.models.decode_heads import MultiResFeatures, fuse_scales
from mmseg_dida.models.segmentors import as_uda_segmentor, random_crop_box, slide_boxes
from tests.helpers.uda import tiny_hrda


class _Returns(torch.nn.Module):
    """A stand-in sub-head returning given tensors in turn."""

    def __init__(self, *outputs):
        super().__init__()
        self.outputs = list(outputs)

    def forward(self, feats):
        return self.outputs.pop(0)


def build(**kwargs):
    torch.manual_seed(0)
    model = MODELS.build(tiny_hrda(**kwargs))
    model.init_weights()
    return model


# ------------------------------------------------------------------ crop boxes
def test_random_crop_box_is_divisible_inside_and_reaches_every_offset():
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(400):
        y1, y2, x1, x2 = random_crop_box((40, 30), (16, 8), divisible=8, generator=g)
        assert (y2 - y1, x2 - x1) == (16, 8)
        assert y1 % 8 == 0 and x1 % 8 == 0
        assert 0 <= y1 and y2 <= 40 and 0 <= x1 and x2 <= 30
        seen.add((y1, x1))
    # every divisible offset whose crop fits: y1 in {0, 8, 16, 24}, x1 in {0, 8, 16}
    assert seen == {(y, x) for y in (0, 8, 16, 24) for x in (0, 8, 16)}


def test_random_crop_box_whole_image_draws_nothing_and_bad_sizes_are_refused():
    state = torch.get_rng_state()
    assert random_crop_box((32, 48), (32, 48), divisible=8) == (0, 32, 0, 48)
    assert torch.equal(state, torch.get_rng_state())
    with pytest.raises(ValueError, match='does not fit'):
        random_crop_box((32, 32), (33, 8))
    with pytest.raises(ValueError, match='divisible'):
        random_crop_box((32, 32), (16, 16), divisible=0)


def test_slide_boxes_known_grid_and_coverage():
    boxes = slide_boxes((1024, 2048), (512, 512), (256, 256))
    assert len(boxes) == 3 * 7
    assert boxes[0] == (0, 512, 0, 512) and boxes[-1] == (512, 1024, 1536, 2048)
    cover = torch.zeros(1024, 2048)
    for y1, y2, x1, x2 in boxes:
        assert (y2 - y1, x2 - x1) == (512, 512)
        cover[y1:y2, x1:x2] += 1
    assert cover.min() == 1 and cover.max() == 4
    # a stride that does not divide: the last window ends at the border
    assert slide_boxes((100, 60), (64, 64), (32, 32))[-1] == (36, 100, 0, 60)
    # an image smaller than the window: one clipped window
    assert slide_boxes((20, 30), (64, 64), (32, 32)) == [(0, 20, 0, 30)]


# ------------------------------------------------------------------ the fusion
def test_fuse_scales_on_constructed_inputs():
    lr = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).view(2, 3, 4, 4)
    hr = torch.full((2, 3, 8, 8), -7.0)
    up = F.interpolate(lr, size=(8, 8), mode='bilinear', align_corners=False)
    # attention 0: the upsampled LR prediction; 1: the HR one; 1/2: their mean
    zero, one = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    torch.testing.assert_close(fuse_scales(lr, zero, hr), up)
    torch.testing.assert_close(fuse_scales(lr, one, hr), hr)
    torch.testing.assert_close(fuse_scales(lr, 0.5 * one, hr), 0.5 * up + 0.5 * hr)
    # class-wise attention: class 1 from HR, the others from LR
    att = torch.zeros(2, 3, 4, 4)
    att[:, 1] = 1
    fused = fuse_scales(lr, att, hr)
    torch.testing.assert_close(fused[:, 1], hr[:, 1])
    torch.testing.assert_close(fused[:, [0, 2]], up[:, [0, 2]])


def test_head_masks_attention_outside_the_training_crop():
    model = build()
    head = model.decode_head
    # constant attention 0.75 and constant sub-head outputs
    head.scale_attention_map = lambda feats: torch.full((1, 4, 8, 8), 0.75)
    head.head = _Returns(torch.full((1, 4, 8, 8), 2.0), torch.full((1, 4, 8, 8), 10.0))
    # a 32x32 HR crop at (8, 16) of a 64x64 image: HR output grid 16x16, crop at
    # (2:10, 4:12); LR output grid 8x8
    feats = MultiResFeatures(lr=[None], hr=[None], hr_boxes=[(8, 40, 16, 48)],
                             hr_size=(64, 64), scale_ratio=2.0)
    fused, lr, hr = head(feats)
    assert fused.shape == (1, 4, 16, 16)
    inside = fused[..., 3:9, 5:11]  # away from the bilinear border of the mask
    torch.testing.assert_close(inside, torch.full_like(inside, 0.25 * 2 + 0.75 * 10))
    outside = torch.ones(16, 16, dtype=torch.bool)
    outside[1:11, 3:13] = False
    torch.testing.assert_close(fused[..., outside], torch.full((1, 4, 156), 2.0))


def test_head_slide_windows_are_averaged_and_attend_everywhere():
    model = build()
    head = model.decode_head
    head.scale_attention_map = lambda feats: torch.ones(1, 4, 4, 6)
    # two overlapping 32-wide windows of a 32x48 image (HR output 8x12)
    crops = torch.cat([torch.full((1, 4, 8, 8), 1.0), torch.full((1, 4, 8, 8), 3.0)])
    head.head = _Returns(torch.zeros(1, 4, 4, 6), crops)
    feats = MultiResFeatures(lr=[None], hr=[None],
                             hr_boxes=[(0, 32, 0, 32), (0, 32, 16, 48)],
                             hr_size=(32, 48), scale_ratio=2.0)
    fused = head(feats)[0]
    torch.testing.assert_close(fused[..., :4], torch.full((1, 4, 8, 4), 1.0))
    torch.testing.assert_close(fused[..., 4:8], torch.full((1, 4, 8, 4), 2.0))
    torch.testing.assert_close(fused[..., 8:], torch.full((1, 4, 8, 4), 3.0))


def test_misaligned_crop_is_refused_with_the_fix_named():
    model = build(crop_coord_divisible=4)
    torch.manual_seed(3)
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match='crop_coord_divisible'):
        for _ in range(20):  # some offset not divisible by 8 occurs
            model.uda_forward(x)


# ------------------------------------------------------------ loss weighting
def _ce(logits, label, weight=None):
    logits = F.interpolate(logits, size=label.shape[-2:], mode='bilinear',
                           align_corners=False)
    ce = F.cross_entropy(logits, label, reduction='none', ignore_index=255)
    return (ce if weight is None else ce * weight).mean()


@pytest.mark.parametrize('hr_w, lr_w', [(0.1, 0.0), (0.1, 0.3), (0.0, 0.0)])
def test_hr_and_lr_loss_weighting(hr_w, lr_w):
    model = build(decode_head=dict(type='HRDAHead', hr_loss_weight=hr_w,
                                   lr_loss_weight=lr_w,
                                   single_scale_head=tiny_hrda()['decode_head'][
                                       'single_scale_head']))
    g = torch.Generator().manual_seed(0)
    fused = torch.randn(2, 4, 16, 16, generator=g)
    lr = torch.randn(2, 4, 8, 8, generator=g)
    hr = torch.randn(2, 4, 8, 8, generator=g)
    label = torch.randint(0, 4, (2, 1, 64, 64), generator=g)
    label[0, :, :5] = 255
    weight = torch.rand(2, 64, 64, generator=g)
    box = (8, 40, 16, 48)
    losses = model.decode_head.loss_by_label((fused, lr, hr), label, weight, box)
    y = label[:, 0]
    assert losses['loss_ce'].item() == pytest.approx(
        (1 - hr_w - lr_w) * _ce(fused, y, weight).item(), rel=1e-5)
    assert ('hr.loss_ce' in losses) == (hr_w > 0)
    assert ('lr.loss_ce' in losses) == (lr_w > 0)
    if hr_w:
        ref = _ce(hr, y[:, 8:40, 16:48], weight[:, 8:40, 16:48])
        assert losses['hr.loss_ce'].item() == pytest.approx(hr_w * ref.item(), rel=1e-5)
    if lr_w:
        assert losses['lr.loss_ce'].item() == pytest.approx(
            lr_w * _ce(lr, y, weight).item(), rel=1e-5)
    # accuracies are logged, not weighted
    assert losses['acc_seg'].item() > 1.0


# -------------------------------------------------------------- inference
def test_slide_inference_equals_whole_when_one_window_covers_the_image():
    model = build()
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    metas = [dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64))] * 2
    with torch.no_grad():
        whole = model.inference(x, metas)
        model.test_cfg = ConfigDict(mode='slide', crop_size=(64, 64), stride=(32, 32),
                                    batched_slide=True)
        slide = model.inference(x, metas)
    torch.testing.assert_close(slide, whole)
    # and the HR windows: one window of the image's size = the whole HR image
    hr_win = build(hr_crop=64)
    no_slide = build(hr_crop=64, hr_slide_inference=False)
    for m in (hr_win, no_slide):
        m.eval()
    with torch.no_grad():
        torch.testing.assert_close(hr_win.encode_decode(x, metas),
                                   no_slide.encode_decode(x, metas))


def test_batched_slide_equals_mmseg_slide_and_windows_overlap():
    model = build()
    model.eval()
    x = torch.randn(2, 3, 64, 96)
    metas = [dict(img_shape=(64, 96), ori_shape=(64, 96), pad_shape=(64, 96))
             for _ in range(2)]
    assert len(model.inference_boxes((64, 96))) == 3 * 5  # HR windows 32, stride 16
    with torch.no_grad():
        model.test_cfg = ConfigDict(mode='slide', crop_size=(64, 64), stride=(32, 32),
                                    batched_slide=True)
        batched = model.inference(x, copy.deepcopy(metas))
        model.test_cfg.batched_slide = False
        plain = model.inference(x, copy.deepcopy(metas))
    torch.testing.assert_close(batched, plain, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------- the contract
def test_training_forward_views_and_feature_distance_view():
    model = build()
    model.train()
    seg = as_uda_segmentor(model)
    assert seg is model
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)
    out = seg.uda_forward(x)
    y1, y2, x1, x2 = out.pixel_box
    assert (y2 - y1, x2 - x1) == (32, 32) and y1 % 8 == 0 and x1 % 8 == 0
    # pixel features: the HR crop at stride 4; LR: the whole image at half size
    assert out.pixel_feats[0].shape[-2:] == (8, 8)
    assert out.feats.lr[0].shape[-2:] == (8, 8)
    fused, lr, hr = out.logits
    assert fused.shape[-2:] == (16, 16) and hr.shape[-2:] == (8, 8)
    labels = torch.randint(0, 4, (2, 64, 64))
    feat, view, view_labels = seg.fd_view(out, x, labels)
    assert feat is out.feats.lr[-1]
    torch.testing.assert_close(view, F.interpolate(x, scale_factor=0.5,
                                                   mode='bilinear'))
    assert view_labels.shape == (2, 1, 64, 64)
    # the reference backbone on that view gives the LR features again (eval = train
    # for this LayerNorm network without dropout)
    torch.testing.assert_close(seg.backbone_feat(view)[-1], feat)
    losses = seg.uda_loss(out, labels)
    assert set(losses) == {'decode.loss_ce', 'decode.acc_seg', 'decode.hr.loss_ce',
                           'decode.hr.acc_seg'}
    # the HR feature scale: the crop, its labels
    model.feature_scale = 1.0
    feat, view, view_labels = seg.fd_view(out, x, labels)
    assert feat is out.feats.hr[-1]
    torch.testing.assert_close(view, x[..., y1:y2, x1:x2])
    assert torch.equal(view_labels[:, 0], labels[:, y1:y2, x1:x2])


def test_mmseg_loss_api_reads_seg_weight_from_samples():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    model = build()
    model.train()
    x = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, 4, (2, 1, 64, 64))
    samples = []
    for i in range(2):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=labels[i])
        s.seg_weight = PixelData(data=torch.zeros(1, 64, 64))
        samples.append(s)
    losses = model.loss(x, samples)
    assert losses['decode.loss_ce'].item() == 0.0  # every pixel weighted 0
    assert losses['decode.hr.loss_ce'].item() == 0.0


@pytest.mark.parametrize('bad, message', [
    (dict(scales=(0.5, 0.75)), 'scales must be'),
    (dict(feature_scale=0.25), 'feature_scale 0.25 must be one of'),
    (dict(crop_coord_divisible=0), 'crop_coord_divisible must be an int'),
    (dict(hr_crop_size=None), 'hr_slide_inference needs hr_crop_size'),
    (dict(decode_head=dict(type='WeightedSegformerHead', in_channels=[8, 16, 32, 64],
                           in_index=[0, 1, 2, 3], channels=8, num_classes=4)),
     'decode_head must be an HRDAHead'),
])
def test_bad_options_are_refused(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        MODELS.build(tiny_hrda(**bad))

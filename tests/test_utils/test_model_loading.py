"""mmseg_dida.deploy.model_loading: strict loading (one-line refusals), the UDA <->
plain segmentor layouts, models built from checkpoints without pretrained files."""
import pytest
import torch
from mmengine.config import Config

import mmseg_dida  # noqa: F401
from mmseg_dida.deploy import deploy_segmentor
from mmseg_dida.deploy.model_loading import (
    build_model_from_checkpoint,
    load_model_weights,
    strip_pretrained_init,
)
from mmseg_dida.deploy.state_mapping import CheckpointMismatchError, CheckpointReadError
from tests.helpers.uda import build_model as build
from tests.helpers.uda import flat_segmentor
from tests.helpers.uda import flat_uda as uda

SEG = flat_segmentor()
DIDA = dict(type='DiDA', recon_channels=8)


def _save(model, path):
    torch.save({'meta': {'x': 1}, 'state_dict': model.state_dict()}, path)
    return str(path)


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_exact_checkpoint_loads(tmp_path):
    src, dst = build(SEG), build(SEG)
    report = load_model_weights(dst, _save(src, tmp_path / 'a.pth'))
    assert report.exact and report.layout == 'same' and report.meta == {'x': 1}
    assert _same(src, dst)


def test_unreadable_checkpoint_is_refused(tmp_path):
    (tmp_path / 'cut.pth').write_bytes(b'PK\x03\x04 half an archive')
    with pytest.raises(CheckpointReadError, match='truncated'):
        load_model_weights(torch.nn.Linear(2, 2), str(tmp_path / 'cut.pth'))


@pytest.mark.parametrize('plugins', [[], [DIDA]], ids=['daformer', 'dida'])
def test_uda_checkpoint_maps_onto_plain_segmentor(tmp_path, plugins):
    trained = build(uda(plugins))
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))
    seg = build(SEG)
    report = load_model_weights(seg, _save(trained, tmp_path / 'u.pth'))
    assert report.layout == 'uda->segmentor' and report.exact
    assert _same(seg, deploy_segmentor(trained))
    assert any(k.startswith('teacher.') for k in report.dropped)


@pytest.mark.parametrize('plugins', [[], [DIDA]], ids=['daformer', 'dida'])
def test_plain_checkpoint_maps_into_uda_student(tmp_path, plugins):
    seg = build(SEG)
    model = build(uda(plugins))
    report = load_model_weights(model, _save(seg, tmp_path / 'p.pth'))
    assert report.layout == 'segmentor->uda'
    assert _same(deploy_segmentor(model), seg)
    x = torch.randn(1, 3, 32, 64)
    metas = [dict(img_shape=(32, 64), ori_shape=(32, 64), pad_shape=(32, 64))]
    model.eval(), seg.eval()
    assert torch.equal(model.student.encode_decode(x, metas), seg.encode_decode(x, metas))


def test_mismatch_is_one_line_with_counts_and_cause(tmp_path):
    other = dict(SEG, decode_head=dict(SEG['decode_head'], num_classes=7))
    path = _save(build(uda()), tmp_path / 'u.pth')
    with pytest.raises(CheckpointMismatchError) as err:
        load_model_weights(build(other), path)
    msg = str(err.value)
    assert '\n' not in msg
    assert '2 of another shape (decode_head.conv_seg.weight: (4, 8, 1, 1) vs (7, 8, 1, 1)' \
        in msg
    assert 'a UDA training checkpoint for a plain segmentor config' in msg
    assert '--non-strict' in msg
    # a plain segmentor with too few keys for a UDA model
    small = dict(SEG, backbone=dict(SEG['backbone'], num_stages=4, embed_dims=16),
                 decode_head=dict(SEG['decode_head'], in_channels=[16] * 4))
    with pytest.raises(CheckpointMismatchError, match='plain segmentor checkpoint for '
                       'a UDA training config'):
        load_model_weights(build(uda()), _save(build(small), tmp_path / 's.pth'))
    # an unrelated state dict
    torch.save({'state_dict': {'foo.weight': torch.zeros(2)}}, tmp_path / 'x.pth')
    with pytest.raises(CheckpointMismatchError, match=r'\d+ missing .*1 unexpected '
                       r'\(foo.weight\).*another architecture'):
        load_model_weights(build(SEG), str(tmp_path / 'x.pth'))


def test_another_methods_run_of_another_student_is_refused_by_its_student(tmp_path):
    """A UDA checkpoint into another UDA model whose student differs (here the
    number of classes): the refusal names what the student lacks or has in another
    shape, not the whole checkpoint as unexpected; --non-strict loads what fits."""
    other = dict(SEG, decode_head=dict(SEG['decode_head'], num_classes=7))
    src = build(uda())
    path = _save(src, tmp_path / 'u.pth')
    model = build(dict(uda([DIDA]), segmentor=other))
    with pytest.raises(CheckpointMismatchError) as err:
        load_model_weights(model, path)
    msg = str(err.value)
    assert 'decode_head.conv_seg.weight' in msg and 'teacher.' not in msg, msg
    report = load_model_weights(model, path, strict=False)
    assert report.loaded > 0 and not report.exact
    got = model.student.backbone.backbone.layers[0][0].projection.weight
    assert torch.equal(got, src.student.backbone.layers[0][0].projection.weight)


def test_non_strict_loads_what_matches(tmp_path):
    other = dict(SEG, decode_head=dict(SEG['decode_head'], num_classes=7))
    src = build(uda())
    target = build(other)
    report = load_model_weights(target, _save(src, tmp_path / 'u.pth'), strict=False)
    assert len(report.mismatched) == 2 and not report.exact
    ref = deploy_segmentor(src).state_dict()
    got = target.state_dict()
    assert torch.equal(got['backbone.layers.0.0.projection.weight'],
                       ref['backbone.layers.0.0.projection.weight'])
    assert got['decode_head.conv_seg.weight'].shape == (7, 8, 1, 1)


def test_build_model_from_checkpoint_strips_the_pretrained_init(tmp_path):
    src = build(uda([DIDA]))
    cfg = Config(dict(default_scope='mmseg', model=dict(
        uda([DIDA]), segmentor=dict(SEG, init_cfg=dict(type='Pretrained',
                                                       checkpoint='absent.pth')))))
    model, report = build_model_from_checkpoint(cfg, _save(src, tmp_path / 'u.pth'))
    assert report.exact and report.layout == 'same' and _same(model, src)
    assert model.student.init_cfg is None  # built without its pretrained init
    assert cfg.model.segmentor.init_cfg.checkpoint == 'absent.pth'  # not modified


def test_strip_pretrained_init_nested():
    cfg = dict(type='DACS', init_cfg=dict(type='Pretrained', checkpoint='a.pth'),
               segmentor=dict(pretrained='mit_b5.pth',
                              backbone=dict(type='MiT', init_cfg=dict(type='Kaiming')),
                              heads=[dict(init_cfg=dict(type='Normal')),
                                     dict(pretrained='x.pth', channels=8)]),
               other=dict(channels=4))
    strip_pretrained_init(cfg)
    assert 'init_cfg' not in cfg and 'init_cfg' not in cfg['segmentor']['backbone']
    assert cfg['segmentor']['pretrained'] is None
    assert cfg['segmentor']['heads'] == [dict(), dict(pretrained=None, channels=8)]
    assert cfg['other'] == dict(channels=4)  # keys without weights are kept

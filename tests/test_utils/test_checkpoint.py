"""mmseg_dida.utils.checkpoint: atomic files, the resume fallback, strict loading."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.utils.checkpoint import (
    CheckpointMismatchError,
    CheckpointReadError,
    atomic_torch_save,
    atomic_write,
    atomic_write_text,
    checkpoint_problem,
    find_resume_checkpoint,
    load_model_weights,
    remove_stale_temporaries,
    strip_pretrained_init,
)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..',
                                'test_models', 'test_uda'))
from uda_toy import flat_segmentor  # noqa: E402

SEG = flat_segmentor()


def build(cfg):
    init_default_scope('mmseg')
    return MODELS.build(ConfigDict(cfg))


def uda(plugins=()):
    return dict(type='DACS', segmentor=SEG, plugins=list(plugins),
                pseudo_weight_ignore_top=0, pseudo_weight_ignore_bottom=0)


DIDA = dict(type='DiDA', recon_channels=8)


# ------------------------------------------------------------------ atomic files
def test_atomic_write_replaces_only_when_complete(tmp_path):
    path = tmp_path / 'f.txt'
    atomic_write_text(str(path), 'old')
    with pytest.raises(RuntimeError):
        with atomic_write(str(path), 'w') as f:
            f.write('new, half')
            raise RuntimeError('killed')
    assert path.read_text() == 'old'
    assert os.listdir(tmp_path) == ['f.txt']  # the temporary file is gone
    atomic_write_text(str(path), 'new')
    assert path.read_text() == 'new'


def test_sigkill_during_save_leaves_old_file_and_a_stray_temporary(tmp_path):
    path = tmp_path / 'ckpt.pth'
    atomic_torch_save({'x': torch.zeros(3)}, str(path))
    script = textwrap.dedent(f"""
        import os, signal, torch
        from mmseg_dida.utils.checkpoint import atomic_write
        with atomic_write({str(path)!r}) as f:
            f.write(b'partial data')
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        """)
    res = subprocess.run([sys.executable, '-c', script], capture_output=True)
    assert res.returncode == -signal.SIGKILL
    assert torch.equal(torch.load(path)['x'], torch.zeros(3))
    stray = [n for n in os.listdir(tmp_path) if n != 'ckpt.pth']
    assert len(stray) == 1 and '.tmp-' in stray[0]
    assert remove_stale_temporaries(str(tmp_path)) == [str(tmp_path / stray[0])]
    assert os.listdir(tmp_path) == ['ckpt.pth']


def test_checkpoint_problem_detects_truncation(tmp_path):
    path = tmp_path / 'c.pth'
    atomic_torch_save({'w': torch.randn(1000)}, str(path))
    assert checkpoint_problem(str(path)) is None
    data = path.read_bytes()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
    assert 'truncated' in checkpoint_problem(str(tmp_path / 'cut.pth'))
    assert 'does not exist' in checkpoint_problem(str(tmp_path / 'none.pth'))
    with pytest.raises(CheckpointReadError, match='truncated'):
        load_model_weights(torch.nn.Linear(2, 2), str(tmp_path / 'cut.pth'))


def test_resume_falls_back_to_the_newest_complete_checkpoint(tmp_path):
    for i in (2, 4, 6):
        atomic_torch_save({'i': i}, str(tmp_path / f'iter_{i}.pth'))
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_6.pth'))
    path, note = find_resume_checkpoint(str(tmp_path))
    assert path == str(tmp_path / 'iter_6.pth') and note.startswith('resuming from')
    # iter_6 half-written (an old mmengine run), iter_4 deleted
    data = (tmp_path / 'iter_6.pth').read_bytes()
    (tmp_path / 'iter_6.pth').write_bytes(data[:100])
    os.remove(tmp_path / 'iter_4.pth')
    path, note = find_resume_checkpoint(str(tmp_path))
    assert path == str(tmp_path / 'iter_2.pth')
    assert 'iter_6.pth, but it is truncated' in note
    assert 'newest complete checkpoint' in note
    # last_checkpoint names a deleted file
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_8.pth'))
    path, note = find_resume_checkpoint(str(tmp_path))
    assert path == str(tmp_path / 'iter_2.pth') and 'does not exist' in note
    os.remove(tmp_path / 'iter_2.pth')
    path, note = find_resume_checkpoint(str(tmp_path))
    assert path is None and 'no complete checkpoint' in note


# ------------------------------------------------------------------ strict loading
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


@pytest.mark.parametrize('plugins', [[], [DIDA]], ids=['daformer', 'dida'])
def test_uda_checkpoint_maps_onto_plain_segmentor(tmp_path, plugins):
    trained = build(uda(plugins))
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))
    seg = build(SEG)
    report = load_model_weights(seg, _save(trained, tmp_path / 'u.pth'))
    assert report.layout == 'uda->segmentor' and report.exact
    from mmseg_dida.models.uda.dida import deploy_segmentor
    assert _same(seg, deploy_segmentor(trained))
    assert any(k.startswith('teacher.') for k in report.dropped)


@pytest.mark.parametrize('plugins', [[], [DIDA]], ids=['daformer', 'dida'])
def test_plain_checkpoint_maps_into_uda_student(tmp_path, plugins):
    seg = build(SEG)
    model = build(uda(plugins))
    report = load_model_weights(model, _save(seg, tmp_path / 'p.pth'))
    assert report.layout == 'segmentor->uda'
    from mmseg_dida.models.uda.dida import deploy_segmentor
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


def test_non_strict_loads_what_matches(tmp_path):
    other = dict(SEG, decode_head=dict(SEG['decode_head'], num_classes=7))
    src = build(uda())
    target = build(other)
    report = load_model_weights(target, _save(src, tmp_path / 'u.pth'), strict=False)
    assert len(report.mismatched) == 2 and not report.exact
    from mmseg_dida.models.uda.dida import deploy_segmentor
    ref = deploy_segmentor(src).state_dict()
    got = target.state_dict()
    assert torch.equal(got['backbone.layers.0.0.projection.weight'],
                       ref['backbone.layers.0.0.projection.weight'])
    assert got['decode_head.conv_seg.weight'].shape == (7, 8, 1, 1)


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

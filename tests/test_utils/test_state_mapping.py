"""mmseg_dida.deploy.state_mapping: checkpoints read or refused, compared key by key,
and a UDA student's tensors mapped to and from the plain segmentor's names by the
wrappers' own layout (no DiffusionEncoder names in the mapping code)."""
import pytest
import torch

import mmseg_dida  # noqa: F401
from mmseg_dida.deploy import deploy_segmentor
from mmseg_dida.deploy.state_mapping import (
    CheckpointReadError,
    LoadReport,
    compare,
    likely_cause,
    read_state_dict,
    segmentor_into_student,
    student_to_segmentor,
)
from mmseg_dida.utils.atomic_files import atomic_torch_save
from tests.helpers.uda import build_model as build
from tests.helpers.uda import flat_segmentor
from tests.helpers.uda import flat_uda as uda

SEG = flat_segmentor()
DIDA = dict(type='DiDA', recon_channels=8)






def test_read_state_dict_unwraps_and_refuses(tmp_path):
    w = torch.ones(2)
    state, meta = read_state_dict({'meta': {'a': 1}, 'state_dict': {
        'module.x.weight': w, 'y': w, 'step': 3}})
    assert list(state) == ['x.weight', 'y'] and meta == {'a': 1}  # tensors only
    assert read_state_dict({'model': {'z': w}})[0] == {'z': w}
    assert read_state_dict({'z': w}) == ({'z': w}, {})
    path = tmp_path / 'c.pth'
    atomic_torch_save({'state_dict': {'z': w}}, str(path))
    assert torch.equal(read_state_dict(str(path))[0]['z'], w)
    data = path.read_bytes()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointReadError, match='truncated'):
        read_state_dict(str(tmp_path / 'cut.pth'))
    with pytest.raises(CheckpointReadError, match='a checkpoint is a dict, got list'):
        read_state_dict([w])
    with pytest.raises(CheckpointReadError, match='no state_dict'):
        read_state_dict({'state_dict': 3})


def test_compare_and_report_summary():
    expected = {'a': torch.Size([2]), 'b': torch.Size([3]), 'c': torch.Size([1])}
    state = {'a': torch.zeros(2), 'b': torch.zeros(4), 'd': torch.zeros(1)}
    missing, unexpected, mismatched = compare(expected, state)
    assert (missing, unexpected, mismatched) == (['c'], ['d'], ['b: (4,) vs (3,)'])
    report = LoadReport(missing=missing, unexpected=unexpected, mismatched=mismatched)
    assert not report.exact
    assert report.summary() == ('1 missing (c); 1 unexpected (d); '
                                '1 of another shape (b: (4,) vs (3,))')
    assert LoadReport(missing=list('abcde')).summary(limit=2) == \
        '5 missing (a, b, ... 3 more)'
    assert LoadReport().exact and LoadReport().summary() == 'all keys match'


@pytest.mark.parametrize('plugins', [[], [DIDA]], ids=['daformer', 'dida'])
def test_student_state_maps_to_the_deployed_names(plugins):
    """Without the training model: the student's tensors under the segmentor's names
    (DiDA: g's tensors out of the DiffusionEncoder by its own rule), the rest
    dropped."""
    trained = build(uda(plugins))
    deployed = deploy_segmentor(trained).state_dict()
    expected = {k: v.shape for k, v in deployed.items()}
    mapped, dropped = student_to_segmentor(trained.state_dict(), expected)
    assert list(mapped) == list(deployed)
    assert all(torch.equal(mapped[k], deployed[k]) for k in deployed)
    assert {k.split('.')[0] for k in dropped} == {'teacher', 'imnet_model', 'local_iter'} | (
        {'student', 'plugins'} if plugins else set())
    wrapped = {k.split('.')[2] for k in dropped if k.startswith('student.')}
    assert wrapped == ({'g_prime', 'time_embed', 'film'} if plugins else set())


@pytest.mark.parametrize('plugins', [[], [DIDA]], ids=['daformer', 'dida'])
def test_segmentor_state_maps_into_the_student(plugins):
    model = build(uda(plugins))
    seg_state = build(SEG).state_dict()
    mapped, missing, unused = segmentor_into_student(model, seg_state)
    assert missing == [] and unused == []
    prefix = 'student.backbone.backbone.' if plugins else 'student.backbone.'
    assert all(torch.equal(mapped[prefix + k[len('backbone.'):]], v)
               for k, v in seg_state.items() if k.startswith('backbone.'))
    assert set(mapped) <= set(model.state_dict())
    del seg_state['decode_head.conv_seg.bias']
    seg_state['extra'] = torch.zeros(1)
    _, missing, unused = segmentor_into_student(model, seg_state)
    assert missing == ['decode_head.conv_seg.bias'] and unused == ['extra']


def test_likely_cause_names_the_layouts():
    assert 'UDA training checkpoint for a plain' in likely_cause(['a'], ['student.a'], [])
    assert 'plain segmentor checkpoint for a UDA' in likely_cause(['student.a'], ['a'], [])
    assert 'other sizes' in likely_cause(['a'], ['a'], ['a: (1,) vs (2,)'])
    assert 'another architecture' in likely_cause(['a'], ['b'], [])

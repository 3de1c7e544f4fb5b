"""EMA teacher: alpha ramp, update formula, parameters only, no dropout/drop-path."""
import pytest
import torch
from mmcv.cnn.bricks.drop import DropPath
from torch import nn

import mmseg_dida  # noqa: F401
from mmseg_dida.models.uda.ema_teacher import EMATeacher, ema_alpha


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5),
                         DropPath(0.5))


def test_alpha_ramp_known_values():
    assert ema_alpha(0, 0.999) == 0.0
    assert ema_alpha(1, 0.999) == pytest.approx(0.5)
    assert ema_alpha(9, 0.999) == pytest.approx(0.9)
    assert ema_alpha(499, 0.999) == pytest.approx(0.998)
    assert ema_alpha(998, 0.999) == pytest.approx(1 - 1 / 999)
    assert ema_alpha(999, 0.999) == pytest.approx(0.999)
    assert ema_alpha(40000, 0.999) == 0.999


def test_update_formula_parameters_only():
    student = _net()
    teacher = EMATeacher(student, alpha=0.999)
    phi0 = [p.clone() for p in teacher.model.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
        student[1].running_mean.fill_(7.0)
    a = teacher.update(student, 3)  # alpha_3 = 0.75
    assert a == pytest.approx(0.75)
    for t, s, p0 in zip(teacher.model.parameters(), student.parameters(), phi0):
        assert torch.allclose(t, 0.75 * p0 + 0.25 * s)
        assert not t.requires_grad
    # Buffers (BN running statistics) are not averaged.
    assert torch.all(teacher.model[1].running_mean == 0)
    # At iteration 0 (alpha 0) or by copy_from the teacher equals the student.
    teacher.update(student, 0)
    for t, s in zip(teacher.model.parameters(), student.parameters()):
        assert torch.equal(t, s)
    teacher.copy_from(student)
    assert torch.all(teacher.model[1].running_mean == 7.0)


def test_teacher_train_mode_without_stochastic_layers():
    teacher = EMATeacher(_net())
    teacher.train()
    assert teacher.model[1].training  # BN keeps batch statistics
    assert not teacher.model[2].training and not teacher.model[3].training
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(teacher(x), teacher(x))  # deterministic despite p=0.5 layers
    with pytest.raises(ValueError, match='alpha'):
        EMATeacher(_net(), alpha=1.0)


class _Wrapped(nn.Module):
    """A student whose first layer sits inside a wrapper with a training-only twin."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.wrap = nn.Module()
        self.wrap.main = nn.Conv2d(3, 4, 3)
        self.wrap.extra = nn.Conv2d(3, 4, 3)
        self.head = nn.Conv2d(4, 2, 1)


def _keep_main(model):
    model.wrap = model.wrap.main
    return model


def test_strip_pairs_by_origin_not_by_position():
    student = _Wrapped()
    teacher = EMATeacher(student, strip=[_keep_main])
    names = [n for n, _ in teacher.model.named_parameters()]
    assert names == ['wrap.weight', 'wrap.bias', 'head.weight', 'head.bias']
    with torch.no_grad():
        student.wrap.extra.weight.fill_(50.0)  # would leak in with positional pairing
        student.wrap.main.weight.fill_(2.0)
    phi0 = teacher.model.wrap.weight.clone()
    a = teacher.update(student, 3)  # alpha_3 = 0.75
    torch.testing.assert_close(teacher.model.wrap.weight,
                               0.75 * phi0 + 0.25 * torch.full_like(phi0, 2.0))
    assert a == pytest.approx(0.75)
    teacher.copy_from(student)
    assert torch.equal(teacher.model.head.weight, student.head.weight)
    assert torch.all(teacher.model.wrap.weight == 2.0)


def test_strip_building_new_modules_is_an_error():
    def replace_head(model):
        model.head = nn.Conv2d(4, 2, 1)
        return model

    with pytest.raises(RuntimeError, match='head.weight'):
        EMATeacher(_Wrapped(), strip=[replace_head])


def test_student_changed_after_teacher_is_an_error():
    student = _Wrapped()
    teacher = EMATeacher(student)
    del student.head
    with pytest.raises(RuntimeError, match='head.weight'):
        teacher.update(student, 1)


def test_a_state_in_the_full_copy_layout_is_refused():
    """The teacher holds only what it keeps (strip); a state holding the whole
    student under the student's names does not load strictly."""
    full = EMATeacher(_Wrapped())  # no strip: a full copy
    stripped = EMATeacher(_Wrapped(), strip=[_keep_main])
    with pytest.raises(RuntimeError, match='wrap.main.weight'):
        stripped.load_state_dict(full.state_dict(), strict=True)
    again = EMATeacher(_Wrapped(), strip=[_keep_main])  # its own layout round-trips
    with torch.no_grad():
        for p in stripped.model.parameters():
            p.mul_(3.0)
    again.load_state_dict(stripped.state_dict(), strict=True)
    assert torch.equal(again.model.wrap.weight, stripped.model.wrap.weight)

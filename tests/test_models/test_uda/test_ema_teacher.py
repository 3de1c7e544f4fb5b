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

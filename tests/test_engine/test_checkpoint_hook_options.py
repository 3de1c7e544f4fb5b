"""ResumableCheckpointHook's time_interval: a number of minutes > 0 on an
iteration-based schedule; anything else is refused when the hook is built."""
import pytest

import mmseg_dida  # noqa: F401
from mmseg_dida.engine.resume import ResumableCheckpointHook


@pytest.mark.parametrize('value', [0, -1, '30', [30]])
def test_time_interval_is_minutes_above_zero(value):
    with pytest.raises(ValueError, match='time_interval must be a number of minutes'):
        ResumableCheckpointHook(interval=1000, by_epoch=False, time_interval=value)


def test_time_interval_needs_an_iteration_schedule():
    with pytest.raises(ValueError, match=r'iteration-based schedule \(by_epoch=False\)'):
        ResumableCheckpointHook(interval=1, by_epoch=True, time_interval=30)
    hook = ResumableCheckpointHook(interval=1000, by_epoch=False, time_interval=0.5)
    assert hook.time_interval == 0.5

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from mmseg_dida import compat


def _run(code):
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.skipif(compat.mmcv_has_compiled_ops(), reason='full mmcv installed')
def test_mmseg_imports_fully_without_compiled_ops():
    res = _run('import mmseg_dida, sys\n'
               'import mmseg.models, mmseg.apis, mmseg.datasets, mmseg.visualization\n'
               'from mmseg.models.losses import FocalLoss\n'
               'from mmseg.models.decode_heads import CCHead, PSAHead, PointHead\n'
               'print(sys.modules["mmcv.ops"].__name__, "OK")')
    assert res.returncode == 0, res.stderr
    assert 'mmcv.ops OK' in res.stdout


@pytest.mark.skipif(compat.mmcv_has_compiled_ops(), reason='full mmcv installed')
def test_plain_mmseg_import_fails_without_the_shim():
    # The shim is what makes the difference: mmseg alone cannot import its models.
    res = _run('import mmseg.models')
    assert res.returncode != 0
    assert 'mmcv._ext' in res.stderr


def test_shim_not_installed_when_ops_are_compiled():
    # Load compat.py alone (the package __init__ would import mmseg) and pretend the
    # compiled extension exists: the real mmcv.ops must be left alone.
    res = _run('import importlib.util, sys\n'
               'real = importlib.util.find_spec\n'
               'importlib.util.find_spec = lambda n, *a: object() if n == "mmcv._ext" '
               'else real(n, *a)\n'
               f'spec = importlib.util.spec_from_file_location("c", {compat.__file__!r})\n'
               'compat = importlib.util.module_from_spec(spec)\n'
               'spec.loader.exec_module(compat)\n'
               'print(compat.install_mmcv_ops_shim(), "mmcv.ops" in sys.modules)')
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ['False', 'False']


@pytest.mark.skipif(compat.mmcv_has_compiled_ops(), reason='full mmcv installed')
def test_component_needing_an_op_fails_clearly_when_built():
    from mmseg.registry import MODELS
    with pytest.raises(compat.MissingMMCVOpError, match="'CrissCrossAttention'"):
        MODELS.build(dict(type='CCHead', in_channels=8, channels=4, num_classes=3))
    import mmcv.ops
    with pytest.raises(AttributeError):
        mmcv.ops.__wrapped__  # dunder names stay AttributeErrors (inspect, pickle)


def test_point_sample_matches_bilinear_reference():
    # f(x, y) = 2x + 3y + 1 on a 5x4 grid is reproduced exactly by bilinear sampling.
    H, W = 4, 5
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32),
                            torch.arange(W, dtype=torch.float32), indexing='ij')
    img = (2 * xs + 3 * ys + 1)[None, None]
    px = torch.tensor([0.5, 1.25, 3.75, 2.0])  # pixel coordinates (x, y)
    py = torch.tensor([0.5, 2.5, 1.0, 2.75])
    # align_corners=False: normalised u = (p + 0.5) / size
    pts = torch.stack([(px + 0.5) / W, (py + 0.5) / H], -1)[None]
    out = compat.point_sample(img, pts)
    assert out.shape == (1, 1, 4)
    torch.testing.assert_close(out[0, 0], 2 * px + 3 * py + 1)


def _message_hub_checkpoint():
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('compat-test')
    for v in (1.0, 2.0, 3.0):
        hub.update_scalar('train/loss', v)
    hub.update_info('eta', np.float64(12.5))
    return dict(state_dict=dict(w=torch.ones(2)), message_hub=hub.state_dict(),
                meta=dict(iter=3, seed=np.int64(0)))


def test_runner_checkpoint_loads_with_safe_loading(tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save(_message_hub_checkpoint(), path)
    loaded = torch.load(path)  # weights_only defaults to True on torch >= 2.6
    buf = loaded['message_hub']['log_scalars']['train/loss']
    assert buf.mean() == pytest.approx(2.0) and buf.current() == 3.0
    assert loaded['message_hub']['runtime_info']['eta'] == 12.5


class _Evil:

    def __reduce__(self):
        return (print, ('pwned',))


def test_safe_loading_still_rejects_other_globals(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'x': _Evil()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


_MMCV_LITE_WARNING = 'Fail to import ``MultiScaleDeformableAttention``'


@pytest.mark.skipif(compat.mmcv_has_compiled_ops(), reason='full mmcv installed')
def test_start_is_quiet_but_other_warnings_stay():
    # mmcv-lite's harmless warning is gone from a fresh import; another UserWarning,
    # and the same text under another category, are still printed.
    res = _run('import warnings\n'
               'import mmseg_dida, mmcv.cnn.bricks.transformer\n'
               'warnings.warn("another user warning", UserWarning)\n'
               f'warnings.warn("{_MMCV_LITE_WARNING} from x", RuntimeWarning)\n')
    assert res.returncode == 0, res.stderr
    assert 'UserWarning: another user warning' in res.stderr
    assert f'RuntimeWarning: {_MMCV_LITE_WARNING}' in res.stderr
    assert 'UserWarning: Fail to import' not in res.stderr
    assert 'mmcv-lite' not in res.stderr
    # Control: with the shim but without its filter, mmcv does print the warning.
    res = _run('import importlib.util, warnings\n'
               f'spec = importlib.util.spec_from_file_location("c", {compat.__file__!r})\n'
               'compat = importlib.util.module_from_spec(spec)\n'
               'spec.loader.exec_module(compat)\n'
               'assert compat.install_mmcv_ops_shim()\n'
               'warnings.resetwarnings()\n'
               'import mmcv.cnn.bricks.transformer\n')
    assert res.returncode == 0, res.stderr
    assert 'UserWarning: Fail to import ``MultiScaleDeformableAttention``' in res.stderr


@pytest.mark.skipif(compat.mmcv_has_compiled_ops(), reason='full mmcv installed')
def test_tool_help_is_quiet():
    import os.path as osp
    train = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', 'train.py')
    res = subprocess.run([sys.executable, train, '--help'], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert 'usage:' in res.stdout
    assert 'MultiScaleDeformableAttention' not in res.stderr
    assert 'mmcv-lite' not in res.stderr


def test_mmcv_lite_filter_is_narrow():
    # The filter names the message, the category and mmcv's module, nothing wider.
    with warnings.catch_warnings():
        warnings.resetwarnings()
        compat.ignore_mmcv_lite_warning()
        compat.ignore_mmcv_lite_warning()
        assert len(warnings.filters) == 1
        action, message, category, module, _ = warnings.filters[0]
        assert action == 'ignore' and category is UserWarning
        assert message.match(_MMCV_LITE_WARNING + ' from ``mmcv.ops.x``')
        assert not message.match('another user warning')
        assert module.match('mmcv.cnn.bricks.transformer')
        assert not module.match('mmcv.cnn.bricks.transformer_x')
        assert not module.match('__main__')

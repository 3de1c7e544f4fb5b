"""Compatibility of mmseg 1.2.2 / mmengine 0.10.7 with this project's environment.

Three parts, each switched on by :func:`apply` (called when ``mmseg_dida`` is
imported):

* :func:`install_mmcv_ops_shim` -- mmcv-lite ships no compiled ops and mmseg 1.2.2
  imports a few of them unguarded at module level. When (and only when) ``mmcv._ext``
  is absent, a small ``mmcv.ops`` stand-in is registered: ``point_sample`` is provided
  in pure PyTorch (``grid_sample``), every other op name resolves to a placeholder that
  raises :class:`MissingMMCVOpError` naming the op when it is called or instantiated.
  None of DAFormer/HRDA/MIC/DiDA needs a compiled op. With the shim active, mmcv's
  "Fail to import ``MultiScaleDeformableAttention`` ... install ``mmcv`` rather than
  ``mmcv-lite``" UserWarning (printed when ``mmcv.cnn.bricks.transformer`` is first
  imported) says only that, so exactly that warning is filtered
  (:func:`ignore_mmcv_lite_warning`); every other warning stays.
* :func:`allow_runner_checkpoints` -- torch >= 2.6 loads with ``weights_only=True`` by
  default while mmengine calls ``torch.load`` without the argument, so runner-saved
  checkpoints (they hold the message hub's ``HistoryBuffer`` and numpy arrays) fail to
  load. The few data classes such files contain are added to torch's safe-globals
  allowlist; safe loading itself stays on for every file. mmengine also pickles the
  buffer's statistics methods as ``getattr(HistoryBuffer, 'min')`` -- a global no safe
  loader may allow -- although they are class-level registrations restored on import
  anyway, so the buffer is made to save its data only. (A checkpoint written by an
  unpatched mmengine still carries ``getattr``; load such a trusted file once with
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``.)
* :func:`mmseg_dida.engine.resume.checkpoint_io.atomic_runner_checkpoints` --
  mmengine writes a checkpoint in place; it then writes local files completely or not
  at all (that module says how; it lives with the rest of exact resume).

Mixed precision is not patched: :mod:`mmseg_dida.engine.mixed_precision` states what
trains on which device, and a precision that cannot be had is an error.
"""
import importlib.util
import sys
import types
import warnings

import torch
import torch.nn.functional as F

__all__ = [
    'MissingMMCVOpError', 'apply', 'install_mmcv_ops_shim',
    'allow_runner_checkpoints', 'mmcv_has_compiled_ops', 'point_sample',
    'ignore_mmcv_lite_warning'
]

_SHIM_MARKER = '__mmseg_dida_shim__'


class MissingMMCVOpError(RuntimeError):
    """Raised when code needs an mmcv op that mmcv-lite does not compile."""


def mmcv_has_compiled_ops() -> bool:
    """Whether the installed mmcv carries its compiled extension ``mmcv._ext``."""
    return importlib.util.find_spec('mmcv._ext') is not None


def point_sample(input, points, align_corners=False, **kwargs):
    """Pure-PyTorch equivalent of ``mmcv.ops.point_sample``.

    Samples ``input`` (N, C, H, W) at ``points`` (N, P, 2) or (N, Hp, Wp, 2) given in
    [0, 1] x [0, 1] coordinates (x, y), bilinearly, as mmcv does.
    """
    add_dim = points.dim() == 3
    if add_dim:
        points = points.unsqueeze(2)
    output = F.grid_sample(
        input, 2.0 * points - 1.0, align_corners=align_corners, **kwargs)
    if add_dim:
        output = output.squeeze(3)
    return output


class _MissingOp:
    """Placeholder for an mmcv op that is not compiled in this environment."""

    def __init__(self, name: str):
        self.__name__ = name
        self.__qualname__ = name

    def _fail(self, *args, **kwargs):
        raise MissingMMCVOpError(
            f"mmcv op '{self.__name__}' needs mmcv with compiled ops, but the "
            "installed mmcv has none (mmcv-lite). Install the full package "
            "(pip install mmcv==2.1.0, see README 'Install on a GPU cluster') "
            'to use this component.')

    __call__ = _fail

    def __repr__(self):
        return f'<missing mmcv op {self.__name__}>'


class _OpsShim(types.ModuleType):

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        if name in ('get_compiler_version', 'get_compiling_cuda_version'):
            return lambda: 'n/a (mmcv-lite, no compiled ops)'
        op = _MissingOp(name)
        setattr(self, name, op)
        return op


# The one warning mmcv-lite prints on every start (mmcv/cnn/bricks/transformer.py).
_MMCV_LITE_WARNING = r'Fail to import ``MultiScaleDeformableAttention`` from '
_MMCV_LITE_WARNING_MODULE = r'mmcv\.cnn\.bricks\.transformer\Z'


def ignore_mmcv_lite_warning() -> None:
    """Filter mmcv's "Fail to import ``MultiScaleDeformableAttention`` ... install
    ``mmcv`` rather than ``mmcv-lite``" UserWarning, and nothing else.

    The filter matches that message, the UserWarning category and the module that
    warns; it must be installed before ``mmcv.cnn.bricks.transformer`` is first
    imported (:func:`install_mmcv_ops_shim` does so). Calling it again leaves one
    such filter (``warnings`` replaces an identical one).
    """
    warnings.filterwarnings('ignore', message=_MMCV_LITE_WARNING,
                            category=UserWarning, module=_MMCV_LITE_WARNING_MODULE)


def install_mmcv_ops_shim() -> bool:
    """Register the ``mmcv.ops`` stand-in if mmcv has no compiled ops, and with it
    the filter of mmcv-lite's harmless start-up warning.

    Returns True when the shim is (already) active, False when the real ops exist.
    """
    if mmcv_has_compiled_ops():
        return False
    ignore_mmcv_lite_warning()
    existing = sys.modules.get('mmcv.ops')
    if existing is not None and getattr(existing, _SHIM_MARKER, False):
        return True
    import mmcv
    shim = _OpsShim('mmcv.ops', doc='mmseg_dida stand-in for mmcv.ops '
                    '(mmcv-lite has no compiled ops).')
    setattr(shim, _SHIM_MARKER, True)
    shim.point_sample = point_sample
    sys.modules['mmcv.ops'] = shim
    mmcv.ops = shim
    return True


def _runner_checkpoint_globals():
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    dtype_classes = [type(np.dtype(c)) for c in '?bBhHiIlLqQefdgFDGO']
    return [HistoryBuffer, _reconstruct, scalar, np.ndarray, np.dtype] + dtype_classes


def _history_buffer_getstate(self) -> dict:
    """Pickle a HistoryBuffer's data without its (class-level) statistics methods."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def allow_runner_checkpoints() -> None:
    """Let torch's safe loader read the checkpoints mmengine's runner writes."""
    from mmengine.logging.history_buffer import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:  # torch >= 2.4
        add(_runner_checkpoint_globals())


def apply() -> None:
    """Switch on every part (idempotent)."""
    install_mmcv_ops_shim()
    allow_runner_checkpoints()
    from .engine.resume.checkpoint_io import atomic_runner_checkpoints
    atomic_runner_checkpoints()

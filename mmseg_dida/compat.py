"""Compatibility of mmseg 1.2.2 / mmengine 0.10.7 with this project's environment.

Two independent parts, each switched on by :func:`apply` (called when ``mmseg_dida``
is imported):

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
* :func:`atomic_runner_checkpoints` -- mmengine writes a checkpoint in place (a
  killed process leaves a truncated file that the next ``--resume`` or test reads).
  Its ``save_checkpoint`` then writes local files through
  :func:`mmseg_dida.utils.atomic_files.atomic_torch_save` (temporary file in the same
  folder, fsync, rename): a checkpoint file is complete or absent. Remote backends
  (``backend_args``, ``s3://``...) are left to mmengine.
* :func:`amp_without_accelerator` -- mmengine's ``AmpOptimWrapper`` refuses to be
  built without CUDA (or NPU/MLU/MUSA). Without one it now trains with bfloat16
  autocast on the CPU and torch's CPU ``GradScaler``, so that the mixed-precision
  step (loss scaling, skipped steps on non-finite gradients) runs and is tested on
  CPU machines; fp16 autocast still needs CUDA. With an accelerator mmengine's own
  constructor is used unchanged.
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
    'atomic_runner_checkpoints', 'amp_without_accelerator', 'ignore_mmcv_lite_warning'
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


_PATCH_MARKER = '__mmseg_dida_patched__'


def atomic_runner_checkpoints() -> None:
    """Make mmengine's ``save_checkpoint`` write local files atomically."""
    import mmengine.runner as runner_pkg
    import mmengine.runner.checkpoint as ckpt_mod
    import mmengine.runner.runner as runner_mod
    original = ckpt_mod.save_checkpoint
    if getattr(original, _PATCH_MARKER, False):
        return

    def save_checkpoint(checkpoint, filename, file_client_args=None,
                        backend_args=None):
        if file_client_args is None and backend_args is None and \
                '://' not in str(filename):
            from .utils.atomic_files import atomic_torch_save
            atomic_torch_save(checkpoint, str(filename))
            return
        original(checkpoint, filename, file_client_args=file_client_args,
                 backend_args=backend_args)

    save_checkpoint.__doc__ = original.__doc__
    setattr(save_checkpoint, _PATCH_MARKER, True)
    for module in (ckpt_mod, runner_mod, runner_pkg):
        module.save_checkpoint = save_checkpoint


def _has_accelerator() -> bool:
    from mmengine.device import (
        is_cuda_available,
        is_mlu_available,
        is_musa_available,
        is_npu_available,
    )
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def amp_without_accelerator() -> None:
    """Let ``AmpOptimWrapper`` build on a machine without an accelerator: bfloat16
    autocast on the CPU with torch's CPU GradScaler."""
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    original = AmpOptimWrapper.__init__
    if getattr(original, _PATCH_MARKER, False):
        return

    def __init__(self, loss_scale='dynamic', dtype=None, use_fsdp=False, **kwargs):
        if _has_accelerator():
            return original(self, loss_scale=loss_scale, dtype=dtype,
                            use_fsdp=use_fsdp, **kwargs)
        if use_fsdp:
            raise ValueError('AmpOptimWrapper: use_fsdp needs an accelerator')
        dtype = 'bfloat16' if dtype is None else dtype
        if isinstance(dtype, str):
            if dtype not in self.valid_dtypes:
                raise ValueError(f'AmpOptimWrapper: dtype must be one of '
                                 f'{self.valid_dtypes}, got {dtype!r}')
            dtype = getattr(torch, dtype)
        if dtype == torch.float16:
            raise ValueError('AmpOptimWrapper: float16 autocast needs CUDA; without '
                             "it use dtype='bfloat16'")
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        if loss_scale == 'dynamic':
            scaler = torch.amp.GradScaler('cpu')
        elif isinstance(loss_scale, float):
            self._scale_update_param = loss_scale
            scaler = torch.amp.GradScaler('cpu', init_scale=loss_scale)
        elif isinstance(loss_scale, dict):
            scaler = torch.amp.GradScaler('cpu', **loss_scale)
        else:
            raise TypeError('AmpOptimWrapper: loss_scale must be a float, a dict or '
                            f"'dynamic', got {loss_scale!r}")
        self.loss_scaler = scaler
        self.cast_dtype = dtype

    setattr(__init__, _PATCH_MARKER, True)
    AmpOptimWrapper.__init__ = __init__


def apply() -> None:
    install_mmcv_ops_shim()
    allow_runner_checkpoints()
    atomic_runner_checkpoints()
    amp_without_accelerator()

"""Host synchronisations: finding them in a training step, and reading device values
without one.

On a GPU every operation that needs a device value on the host (``.item()``,
``float(t)``, ``bool(t)``, a boolean-mask index, ``nonzero``, ``unique``, ...) makes
the host wait until the device has run everything queued before it. The host then
cannot queue the next kernels while the device works, and the device idles while the
host catches up (Python, the data loader, kernel launches). A training step should
make none; the logging reads once per logging interval
(:class:`mmseg_dida.engine.hooks.DeferredRuntimeInfoHook`), the non-finite check once
per step (:class:`mmseg_dida.engine.hooks.NonFiniteLossHook`).

* :class:`HostSyncCounter` (a ``TorchDispatchMode``) records each operation that would
  synchronise on a GPU, with the line of the project's (or mmengine's) code that made
  it. It runs on the CPU, where nothing waits, so it separates the reads of values
  that live on the host on a GPU too: the results of random draws from a CPU
  ``torch.Generator`` (MIC's and the strong augmentation's) and of tensors made from
  Python numbers, and whatever is computed from those alone. These are listed as
  ``host_reads``, not as syncs. Tensors made by factories with an explicit
  ``device=`` are counted as device tensors (on the CPU the two cannot be told apart,
  so the count errs towards reporting a sync).
* :func:`count_cuda_syncs` counts on a GPU what torch's synchronisation debug mode
  reports (``tests/test_utils/test_host_sync.py`` checks the step with it where CUDA
  is visible: ``tools/benchmarks/gpu_check.py``'s tests part runs it).

The counter does not see a ``.tolist()``/``.numpy()``/``.cpu()`` of a device tensor
made outside the methods it wraps (e.g. ``np.asarray(t)``), nor waits inside
collectives.
"""
import os.path as osp
import sys
from collections import Counter
from typing import Dict, List, Optional, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

aten = torch.ops.aten

#: operators that read a device value on the host (CUDA semantics)
SCALAR_READS = (aten._local_scalar_dense.default, aten.is_nonzero.default,
                aten.equal.default)
#: operators whose output shape depends on device values (the host must wait for them)
DATA_DEPENDENT = ('nonzero', 'argwhere', 'masked_select', '_unique', '_unique2',
                  'unique_dim', 'unique_consecutive', 'bincount')
#: indexing operators that synchronise when an index is a boolean mask
MASK_INDEXING = ('index', 'index_put', 'index_put_', '_index_put_impl_')

def _is_sync(func, args) -> Optional[str]:
    """The kind of synchronisation ``func(*args)`` makes on a GPU, else None."""
    if func in SCALAR_READS:
        return 'read'
    name = func.overloadpacket.__name__
    if name in DATA_DEPENDENT:
        return 'shape'
    if name in MASK_INDEXING and len(args) > 1:
        indices = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
        if any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
               for i in indices):
            return 'shape'
    if name == 'repeat_interleave' and 'output_size' not in (args[2:] or ()):
        if args and isinstance(args[0], torch.Tensor) and args[0].dtype == torch.long:
            return 'shape'
    return None


def _site() -> str:
    """``file:line (function)`` of the innermost frame of mmseg_dida or mmengine code
    (outside this module), relative to the package's parent folder."""
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        if (('mmseg_dida' in path or 'mmengine' in path or 'mmseg' in path)
                and path != __file__):
            for marker in ('mmseg_dida', 'mmengine', 'mmseg'):
                i = path.rfind(osp.sep + marker + osp.sep)
                if i >= 0:
                    path = path[i + 1:]
                    break
            return f'{path}:{frame.f_lineno} ({frame.f_code.co_name})'
        frame = frame.f_back
    return '<outside>'


class HostSyncCounter(TorchDispatchMode):
    """Records, while entered, each operation that would make the host wait for a GPU.

    ``syncs``: list of ``(kind, operator, site)`` for device values ('read': a value
    read on the host; 'shape': an output shape that depends on values);
    ``host_reads``: the same for values that live on the host on a GPU too (random
    draws from CPU generators, tensors made from Python numbers, and what is computed
    from those alone)."""

    def __init__(self):
        super().__init__()
        self.syncs: List[Tuple[str, str, str]] = []
        self.host_reads: List[Tuple[str, str, str]] = []
        self._host = WeakIdKeyDictionary()

    def _is_host(self, t: torch.Tensor) -> bool:
        return t in self._host

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        leaves = tree_leaves((args, kwargs))
        tensors = [t for t in leaves if isinstance(t, torch.Tensor)]
        kind = _is_sync(func, args)
        if kind is not None:
            entry = (kind, func.overloadpacket.__name__, _site())
            host = bool(tensors) and all(self._is_host(t) for t in tensors)
            (self.host_reads if host else self.syncs).append(entry)
        out = func(*args, **kwargs)
        generator = kwargs.get('generator')
        host_born = (
            (generator is not None and generator.device.type == 'cpu')
            or func is aten.lift_fresh.default
            or (tensors and all(self._is_host(t) for t in tensors)))
        if host_born:
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self._host[t] = True
        return out

    #: Tensor methods that copy to the host without an aten operator on the CPU
    #: (``.cpu()`` of a CPU tensor returns it; ``tolist``/``numpy`` read its memory)
    COPIES = ('tolist', 'numpy', 'cpu')
    #: Tensor methods that copy host values to a device when given one: on a GPU a
    #: copy from the host without ``non_blocking=True`` waits for the device's queue
    UPLOADS = ('to', 'cuda')
    #: factories that copy Python data to ``device=`` (a blocking upload on a GPU)
    FACTORIES = ('tensor', 'as_tensor')

    def mark_host(self, tensors) -> None:
        """Count ``tensors`` (e.g. a data batch made before entering) as host values."""
        for t in tree_leaves(tensors):
            if isinstance(t, torch.Tensor):
                self._host[t] = True

    def __enter__(self):
        self._originals = {name: getattr(torch.Tensor, name)
                           for name in self.COPIES + self.UPLOADS + ('new_tensor', )}
        for name in self.COPIES:
            setattr(torch.Tensor, name, self._recording(name, self._originals[name]))
        for name in self.UPLOADS:
            setattr(torch.Tensor, name, self._upload(name, self._originals[name]))
        setattr(torch.Tensor, 'new_tensor',
                self._factory('new_tensor', self._originals['new_tensor'], method=True))
        self._factories = {name: getattr(torch, name) for name in self.FACTORIES}
        for name, original in self._factories.items():
            setattr(torch, name, self._factory(name, original))
        return super().__enter__()

    def __exit__(self, *exc):
        for name, original in self._originals.items():
            setattr(torch.Tensor, name, original)
        for name, original in self._factories.items():
            setattr(torch, name, original)
        return super().__exit__(*exc)

    def _upload(self, name, original):
        counter = self

        def method(tensor, *args, **kwargs):
            to_device = name == 'cuda' or kwargs.get('device') is not None or any(
                isinstance(a, (str, torch.device)) for a in args)
            host = counter._is_host(tensor)
            if to_device and host and not kwargs.get('non_blocking', False) \
                    and not any(a is True for a in args[1:]):
                counter.syncs.append(('upload', name, _site()))
            out = original(tensor, *args, **kwargs)
            if host and not to_device:  # e.g. a dtype cast: still on the host
                counter._host[out] = True
            return out
        return method

    def _factory(self, name, original, method=False):
        counter = self

        def factory(*args, **kwargs):
            data = args[1] if method else (args[0] if args else kwargs.get('data'))
            # new_tensor copies to its tensor's device; the factories to device=
            if (method or kwargs.get('device') is not None) \
                    and not isinstance(data, torch.Tensor):
                counter.syncs.append(('upload', name, _site()))
            return original(*args, **kwargs)
        return factory

    def _recording(self, name, original):
        counter = self

        def method(tensor, *args, **kwargs):
            entry = ('read', name, _site())
            (counter.host_reads if counter._is_host(tensor)
             else counter.syncs).append(entry)
            return original(tensor, *args, **kwargs)
        return method

    def sites(self) -> Dict[str, int]:
        """Number of synchronisations per site."""
        return dict(Counter(site for _, _, site in self.syncs))


def count_cuda_syncs(fn, *args, **kwargs) -> Tuple[int, List[str], object]:
    """On CUDA: run ``fn`` with torch's synchronisation debug mode on and count the
    synchronising calls it reports (the ground truth the CPU counter approximates).
    Returns (count, the first lines of the messages, fn's result)."""
    import warnings
    if not torch.cuda.is_available():
        raise RuntimeError('count_cuda_syncs needs CUDA')
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            result = fn(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    messages = [str(w.message).splitlines()[0] for w in caught
                if 'synchroniz' in str(w.message)]
    return len(messages), messages[:20], result

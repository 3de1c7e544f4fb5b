"""Host synchronisations: finding them in a training step, and reading device values
without one.

On a GPU every operation that needs a device value on the host (``.item()``,
``float(t)``, ``bool(t)``, a boolean-mask index, ``nonzero``, ``unique``, ...) makes
the host wait until the device has run everything queued before it. The host then
cannot queue the next kernels while the device works, and the device idles while the
host catches up (Python, the data loader, kernel launches). A training step should
make none; the logging and the checks that need values make one per logging interval
(:class:`mmseg_dida.engine.hooks.DeferredRuntimeInfoHook`).

* :class:`HostSyncCounter` (a ``TorchDispatchMode``) records each operation that would
  synchronise on a GPU, with the line of the project's (or mmengine's) code that made
  it. It runs on the CPU, where nothing waits, so it separates the reads of values
  that live on the host on a GPU too: the results of random draws from a CPU
  ``torch.Generator`` (MIC's and the strong augmentation's) and of tensors made from
  Python numbers, and whatever is computed from those alone. These are listed as
  ``host_reads``, not as syncs. Tensors made by factories with an explicit
  ``device=`` are counted as device tensors (on the CPU the two cannot be told apart,
  so the count errs towards reporting a sync).
* :func:`tests`-facing helpers: :func:`sync_sites`.
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

    def __enter__(self):
        self._originals = {name: getattr(torch.Tensor, name) for name in self.COPIES}
        for name, original in self._originals.items():
            setattr(torch.Tensor, name, self._recording(name, original))
        return super().__enter__()

    def __exit__(self, *exc):
        for name, original in self._originals.items():
            setattr(torch.Tensor, name, original)
        return super().__exit__(*exc)

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


def sync_sites(fn, *args, **kwargs) -> Tuple[HostSyncCounter, object]:
    """Run ``fn(*args, **kwargs)`` under a :class:`HostSyncCounter`; (counter, result)."""
    with HostSyncCounter() as counter:
        result = fn(*args, **kwargs)
    return counter, result

"""The peak memory of one training step, estimated without a GPU (and counted the
same way on real CPU tensors), for tools/benchmarks/gpu_memory.py.

The estimate: the same step on fake
  tensors (``FakeTensorMode``: shapes, dtypes and storages, no data, no arithmetic),
  under :class:`LiveStorageBytes`, a ``TorchDispatchMode`` that adds a storage's bytes
  (rounded up to 512 B like the CUDA caching allocator) when an operator creates it,
  subtracts them when the storage dies (a weak reference's callback) and keeps the
  maximum. Parameters and buffers come from the real model (built and initialised on
  the CPU, then copied to fake tensors), so construction runs no fake code.
  The label side of the step runs for real (:class:`HybridFake`): an operator whose
  tensor arguments are all real (labels, ClassMix masks, random choices, counters)
  computes real values, and a factory of a small tensor (random timesteps, crop
  positions, augmentation draws) is real too, so Python decisions on them take their
  real branch. The few values read from fake tensors (a finiteness check) are assumed
  (bool True, int 0, float 0.5) and data-dependent shapes are taken at their upper
  bound (a boolean mask selects everything; a ``unique`` finds 16 values); every
  assumption is counted in the output.
On real CPU tensors (for validation on small sizes): the step on real CPU
  tensors under the same :class:`LiveStorageBytes`.

Why our own dispatch mode and not ``torch.distributed._tools.mem_tracker.MemTracker``:
the fake step needs a dispatch mode of its own anyway (real label arithmetic,
assumptions for data-dependent results), a live-bytes counter is 40 lines on top of
it, it works the same on real tensors (so it can be checked against measured bytes)
and it does not depend on a private module whose interface changes between torch
releases; the per-module breakdown MemTracker adds is not needed for one peak.

Mixed precision (``--amp``): on CUDA, mmengine's ``AmpOptimWrapper`` (fp16, dynamic
loss scaling), as ``tools/train.py --amp``. The estimate runs the step under CPU
autocast with float16 (same bytes as CUDA's fp16) and, because CPU autocast keeps
softmax, layer/group norm, exp, sums and the losses in the lower precision while
CUDA's autocast computes them in float32, runs those in float32 the way CUDA's
autocast does (:class:`CudaAutocastFp32Ops`: ``AutocastCPU`` kernels, above autograd,
so the saved tensors get CUDA's dtypes, also when a checkpoint recomputes).

Not seen by the estimate: cuDNN/cuBLAS workspaces, the CUDA context (~0.3-0.5 GB,
outside ``max_memory_allocated`` anyway) and the caching allocator's fragmentation
(reserved > allocated). The table's "fits" applies ``--headroom`` and ``--context-gb``
for these. ``tools/benchmarks/gpu_check.sh`` measures the error on a GPU.
"""
import gc
import weakref
from contextlib import ExitStack, nullcontext
from typing import Dict

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ['GiB', 'CUDA_ROUND', 'LiveStorageBytes', 'HybridFake', 'CudaAutocastFp32Ops',
           'to_fake', 'AutocastContext', 'state_bytes', 'prime_optimizer', 'step_peak']


aten = torch.ops.aten
GiB = 2**30
#: the CUDA caching allocator rounds every allocation up to this many bytes
CUDA_ROUND = 512
#: cards of the table, GB (the marketed size is GiB on these cards)


# ------------------------------------------------------------------ live bytes
class LiveStorageBytes(TorchDispatchMode):
    """Bytes of the live tensor storages and their peak.

    Every storage an operator returns is counted once (views share it) until it dies;
    storages that existed before (the model's parameters) are added by :meth:`track`.
    Works on real and on fake tensors alike (a fake tensor has a meta storage of the
    real size). ``round_to``: allocation granularity (CUDA: 512 B).
    """

    def __init__(self, round_to: int = CUDA_ROUND):
        super().__init__()
        self.round_to = max(1, int(round_to))
        self.current = 0
        self.peak = 0
        self._live: Dict[int, tuple] = {}

    def nbytes(self, storage) -> int:
        n = storage.nbytes()
        return -(-n // self.round_to) * self.round_to

    def track(self, tensors) -> None:
        """Count tensors created outside this mode (each storage once)."""
        for t in tree_leaves(tensors):
            if isinstance(t, torch.Tensor):
                self._add(t)

    def reset_peak(self) -> None:
        self.peak = self.current

    def _add(self, t: torch.Tensor) -> None:
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # no storage (sparse, nested)
            return
        key = id(storage)
        known = self._live.get(key)
        n = self.nbytes(storage)
        if known is not None:
            if known[1] != n:  # resized in place
                self.current += n - known[1]
                self._live[key] = (known[0], n)
        else:
            self._live[key] = (weakref.ref(storage, self._callback(key)), n)
            self.current += n
        self.peak = max(self.peak, self.current)

    def _callback(self, key: int):
        def died(_ref):
            entry = self._live.pop(key, None)
            if entry is not None:
                self.current -= entry[1]
        return died

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._add(t)
        return out


# ------------------------------------------------------------ the fake step
def _fake_types():
    from torch._subclasses.fake_tensor import (
        DataDependentOutputException,
        DynamicOutputShapeException,
        FakeTensor,
        unset_fake_temporarily,
    )
    return (FakeTensor, DataDependentOutputException, DynamicOutputShapeException,
            unset_fake_temporarily)


class HybridFake(TorchDispatchMode):
    """Above a ``FakeTensorMode``: what runs for real, and what is assumed.

    * an operator whose tensor arguments are all real runs for real (labels, masks,
      counters: Python branches on them take their real path);
    * a factory (no tensor argument) whose result has at most ``small`` elements is
      re-run for real (random timesteps, crop positions, augmentation draws), and so
      is a small constant made from a fake tensor's shape (``new_zeros``,
      ``ones_like``: counters such as HRDA's windows per pixel);
    * a scalar read from a fake tensor is assumed: bool True, int 0, float 0.5;
    * a data-dependent shape takes its upper bound: a boolean mask or ``nonzero``
      selects every element, ``unique`` finds ``distinct`` values.

    ``assumptions`` counts what was assumed, by operator."""

    def __init__(self, small: int = 65536, distinct: int = 16):
        super().__init__()
        self.small = small
        self.distinct = distinct
        self.assumptions: Dict[str, int] = {}

    def _assume(self, what: str) -> None:
        self.assumptions[what] = self.assumptions.get(what, 0) + 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        FakeTensor, DataDependent, DynamicShape, unset_fake = _fake_types()
        kwargs = kwargs or {}
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if tensors and not any(isinstance(t, FakeTensor) for t in tensors):
            with unset_fake():
                return func(*args, **kwargs)
        try:
            out = func(*args, **kwargs)
        except DataDependent:
            return self._scalar(func, args)
        except DynamicShape:
            self._assume(f'{func.overloadpacket.__name__} (upper bound)')
            return self._dynamic(func, args, kwargs)
        if not tensors:
            outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
            if outs and all(t.numel() <= self.small for t in outs):
                with unset_fake():
                    return func(*args, **kwargs)
        fill = self._constant_fill(func, args, kwargs)
        if fill is not None and out.numel() <= self.small:
            with unset_fake():  # a small constant tensor shaped like a fake one
                return torch.full(out.shape, fill, dtype=out.dtype)
        return out

    @staticmethod
    def _constant_fill(func, args, kwargs):
        """The value ``func`` fills its result with when it makes a constant tensor
        from another's metadata (``new_zeros``, ``ones_like``, ...), else None."""
        p = func.overloadpacket
        if p in (aten.new_zeros, aten.zeros_like):
            return 0
        if p in (aten.new_ones, aten.ones_like):
            return 1
        if p is aten.new_full:
            return args[2] if len(args) > 2 else kwargs.get('fill_value')
        if p is aten.full_like:
            return args[1] if len(args) > 1 else kwargs.get('fill_value')
        return None

    def _scalar(self, func, args):
        x = args[0] if args else None
        if func not in (aten._local_scalar_dense.default, aten.is_nonzero.default,
                        aten.equal.default) or not isinstance(x, torch.Tensor):
            raise NotImplementedError(f'HybridFake: no assumption for {func}')
        if func is not aten._local_scalar_dense.default or x.dtype == torch.bool:
            self._assume('bool read (True)')
            return True
        if x.dtype.is_floating_point:
            self._assume('float read (0.5)')
            return 0.5
        self._assume('int read (0)')
        return 0

    @staticmethod
    def _long_indices(indices):
        """Boolean index masks as integer indices selecting every element."""
        out = []
        for i in indices:
            if i is not None and i.dtype in (torch.bool, torch.uint8):
                out += [torch.zeros(i.numel(), dtype=torch.long, device=i.device)] * i.dim()
            else:
                out.append(i)
        return out

    def _dynamic(self, func, args, kwargs):
        p = func.overloadpacket
        x = args[0]
        if p in (aten.nonzero, aten.argwhere):
            return torch.zeros((x.numel(), x.dim()), dtype=torch.long, device=x.device)
        if p in (aten.index, aten._unsafe_index):
            return func(x, self._long_indices(args[1]))
        if p in (aten.index_put, aten.index_put_, aten._index_put_impl_):
            return func(x, self._long_indices(args[1]), *args[2:], **kwargs)
        if p is aten.masked_select:
            n = torch.broadcast_shapes(x.shape, args[1].shape).numel()
            return x.new_empty((n,))
        if p in (aten._unique2, aten.unique_dim, aten.unique_consecutive, aten._unique):
            k = min(x.numel(), self.distinct)
            long = dict(dtype=torch.long, device=x.device)
            values = x.new_empty((k,))
            if p is aten._unique:
                return values, torch.zeros(x.shape, **long)
            return values, torch.zeros(x.shape, **long), torch.zeros(k, **long)
        raise NotImplementedError(f'HybridFake: no upper bound for {func}')


class CudaAutocastFp32Ops:
    """While entered, CPU autocast runs the operators that CUDA's autocast runs in
    float32 (its ``fp32`` lists in ATen's ``autocast_mode.cpp``: softmax, log_softmax,
    layer/group norm, exp/log/pow, sums and norms, the losses, nearest upsampling) in
    float32 as CUDA does, so that the estimate's saved tensors get CUDA's dtypes; the
    lower precision list (convolutions, matrix products) is CUDA's already.

    Kernels for the ``AutocastCPU`` dispatch key, which sits above autograd and is
    re-entered when an activation checkpoint recomputes its forward (a Python
    function mode is not); they are removed on exit."""

    OPS = ('acos', 'asin', 'cosh', 'erfinv', 'exp', 'expm1', 'log', 'log10', 'log2',
           'log1p', 'reciprocal', 'rsqrt', 'sinh', 'tan', 'pow', 'softplus',
           'layer_norm', 'native_layer_norm', 'group_norm', 'frobenius_norm',
           'nuclear_norm', 'cosine_similarity', 'poisson_nll_loss',
           'cosine_embedding_loss', 'nll_loss', 'nll_loss2d', 'hinge_embedding_loss',
           'kl_div', 'l1_loss', 'smooth_l1_loss', 'huber_loss', 'mse_loss',
           'margin_ranking_loss', 'multilabel_margin_loss', 'soft_margin_loss',
           'triplet_margin_loss', 'multi_margin_loss', 'binary_cross_entropy_with_logits',
           'dist', 'pdist', 'cdist', 'renorm', 'logsumexp', 'upsample_nearest1d',
           '_upsample_nearest_exact1d', 'upsample_nearest2d', '_upsample_nearest_exact2d',
           'upsample_nearest3d', '_upsample_nearest_exact3d', 'prod', 'softmax',
           'log_softmax', 'cumprod', 'cumsum', 'linalg_vector_norm', 'linalg_matrix_norm',
           'sum')

    def __enter__(self):
        import warnings
        self._lib = torch.library.Library('aten', 'IMPL')
        keys = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)

        def in_fp32(op):
            def up(x):
                return x.float() if isinstance(x, torch.Tensor) and x.dtype in (
                    torch.float16, torch.bfloat16) else x

            def kernel(*args, **kwargs):
                with torch._C._ExcludeDispatchKeyGuard(keys):
                    return op(*[up(a) for a in args], **{k: up(v) for k, v in kwargs.items()})
            return kernel

        with warnings.catch_warnings():  # "overriding a previously registered kernel"
            warnings.simplefilter('ignore')
            for name in self.OPS:
                packet = getattr(aten, name, None)
                for overload in packet.overloads() if packet is not None else ():
                    if 'out' in overload.split('_') or overload.endswith('out'):
                        continue
                    qualname = name if overload == 'default' else f'{name}.{overload}'
                    self._lib.impl(qualname, in_fp32(getattr(packet, overload)),
                                   'AutocastCPU')
        return self

    def __exit__(self, *exc):
        self._lib._destroy()
        return False


def to_fake(model: torch.nn.Module, fake_mode) -> torch.nn.Module:
    """Replace, in place, the parameters and buffers of ``model`` by fake tensors of
    the same shapes (shared ones stay shared); 0-dim integer buffers, the iteration
    counters, stay real so that the step reads their values. Returns ``model``."""
    memo: Dict[int, torch.Tensor] = {}
    for module in model.modules():
        for table, keep_real in ((module._parameters, False), (module._buffers, True)):
            for name, t in list(table.items()):
                if t is None:
                    continue
                if keep_real and t.dim() == 0 and not t.is_floating_point():
                    continue
                if id(t) not in memo:
                    memo[id(t)] = fake_mode.from_tensor(t, static_shapes=True)
                table[name] = memo[id(t)]
    return model


# --------------------------------------------------------------- the config


class AutocastContext:
    """``optim_context`` of the estimate's AMP: CPU autocast, float16."""

    def __init__(self, dtype):
        self.dtype = dtype

    def __call__(self, model):
        return torch.autocast('cpu', dtype=self.dtype)


def state_bytes(model, optimizer, round_to: int = CUDA_ROUND) -> int:
    """Parameters, buffers and optimiser state (each storage once), rounded."""
    seen, total = set(), 0
    tensors = list(model.parameters()) + list(model.buffers())
    for s in optimizer.state.values():
        tensors += [v for v in s.values() if isinstance(v, torch.Tensor)]
    for t in tensors:
        st = t.untyped_storage()
        if id(st) not in seen:
            seen.add(id(st))
            total += -(-st.nbytes() // round_to) * round_to
    return total


def prime_optimizer(optim) -> None:
    """Allocate the optimiser's state as its first step does (AdamW: both moments),
    by one update with zero gradients, without a forward/backward pass."""
    params = [p for g in optim.optimizer.param_groups for p in g['params']
              if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    optim.optimizer.step()
    optim.optimizer.zero_grad(set_to_none=True)


def step_peak(model, optim, data, fake_mode=None, amp: bool = False,
              round_to: int = CUDA_ROUND, full_first_step: bool = False,
              around_step=nullcontext) -> dict:
    """Count one training step of ``model`` on CPU or fake tensors (``fake_mode``):
    first the optimiser's state (:func:`prime_optimizer`, or a full step), then the
    peak of live bytes over one step (inside ``around_step()``, e.g. a profiler).

    Returns ``static`` (bytes live before the step: parameters, buffers, optimiser
    state), ``peak`` and, on fake tensors, the ``assumptions`` made."""
    tracker = LiveStorageBytes(round_to)
    tracker.track(list(model.parameters()) + list(model.buffers()))
    hybrid = HybridFake() if fake_mode is not None else None
    modes = [fake_mode, tracker, hybrid] if fake_mode is not None else [tracker]
    if amp:
        modes.append(CudaAutocastFp32Ops())
    with ExitStack() as stack:
        for mode in modes:
            stack.enter_context(mode)
        if full_first_step:
            model.train_step(data, optim)
        else:
            prime_optimizer(optim)
        gc.collect()
        static = tracker.current
        tracker.reset_peak()
        with around_step():
            model.train_step(data, optim)
    out = dict(static=static, peak=tracker.peak)
    if hybrid is not None:
        out['assumptions'] = hybrid.assumptions
    return out

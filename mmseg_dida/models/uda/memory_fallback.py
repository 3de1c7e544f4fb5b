"""Replay a training step that ran out of GPU memory with plug-ins that use less.

A plug-in that can trade time for memory (DiDA with ``memory_saving='auto'``) names
its next, leaner setting through
:meth:`~mmseg_dida.models.uda.plugin.BaseUDAPlugin.memory_fallback`. While any plug-in
has one, :func:`replay_on_out_of_memory` runs the step's forward and backward passes
as follows:

1. take a snapshot of everything the passes change besides the gradients: the random
   states of the process and of the model's own generators (t, eps, masks), and every
   buffer of the model (BatchNorm running statistics);
2. run the passes; when they raise ``torch.OutOfMemoryError`` (CUDA's "out of
   memory"), drop all that the attempt made (its graph, its gradients), restore the
   snapshot, switch every plug-in that can to its fallback, and go to 1;
3. on success return the passes' result: the step is exactly the one the leaner
   setting would have run from the start (same random numbers, same buffers, no
   gradient of the failed attempt).

The optimiser step comes after, once, so a replay never changes the weights twice, and
the EMA teacher is updated by the caller before the passes. With several processes
(:class:`~mmseg_dida.models.uda.wrappers.UDADistributedWrapper`) every process learns
whether any process ran out (one all-reduce of a flag per step) and all replay
together, so that they keep one setting. The step's own collectives (DACS sums pseudo
label and feature-distance counts over processes) must then have run on every process:
that holds when the processes run out in a plug-in's passes, which come last, as they
do with equal cards and batch shapes; a process that ran out before them would leave
the others waiting. A process that runs out while no plug-in has a fallback left
raises the error as it is.
"""
import gc
from typing import Callable, Dict, Sequence, TypeVar

import torch
import torch.distributed as dist
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from torch import Tensor, nn

from ...utils.random_state import (
    module_device,
    module_generators,
    process_rng_state,
    set_process_rng_state,
)

__all__ = ['StepSnapshot', 'any_process', 'replay_on_out_of_memory']

T = TypeVar('T')


class StepSnapshot:
    """What a training step's passes change besides gradients: random states (the
    process's and the model's own generators) and the model's buffers."""

    def __init__(self, model: nn.Module):
        self.process = process_rng_state()
        self.generators = {n: m.rng_state() for n, m in module_generators(model).items()}
        self.buffers: Dict[str, Tensor] = {
            n: b.detach().clone() for n, b in model.named_buffers() if b is not None}

    def restore(self, model: nn.Module) -> None:
        """Put the model's buffers (in place: references stay valid) and all random
        states back as they were when the snapshot was taken."""
        set_process_rng_state(self.process)
        for name, module in module_generators(model).items():
            module.set_rng_state(self.generators[name], module_device(module))
        with torch.no_grad():
            for name, buf in model.named_buffers():
                if buf is not None:
                    buf.copy_(self.buffers[name])


def any_process(flag: bool, device: torch.device) -> bool:
    """``flag`` of this process or of any other (an all-reduce when distributed)."""
    if not (dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1):
        return flag
    if dist.get_backend() != 'nccl':
        device = torch.device('cpu')
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _peak_note(device: torch.device) -> str:
    if device.type != 'cuda':
        return ''
    total = torch.cuda.get_device_properties(device).total_memory
    peak = torch.cuda.max_memory_allocated(device)
    return f' (peak {peak / 2**30:.1f} of {total / 2**30:.1f} GiB on {device})'


def replay_on_out_of_memory(model: nn.Module, plugins: Sequence,
                            step: Callable[[], T], optim_wrapper: OptimWrapper,
                            iteration: int) -> T:
    """Run ``step`` (the forward and backward passes of one training step of
    ``model``); after an out-of-memory error switch ``plugins`` to their memory
    fallbacks and replay it exactly (module docstring). Without any fallback this is
    ``step()``."""
    if not any(p.memory_fallback() is not None for p in plugins):
        return step()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device('cpu')
    changes = []
    while True:
        snapshot = StepSnapshot(model)
        try:
            result, failed = step(), False
        except torch.OutOfMemoryError:
            if not any(p.memory_fallback() is not None for p in plugins):
                raise
            result, failed = None, True
        # The except block is left: the failed attempt's frames and tensors are free.
        if not any_process(failed, device):
            if changes:
                print_log(f'Iteration {iteration}: the step fits with '
                          f'{"; ".join(changes)}{_peak_note(device)}',
                          logger='current')
            return result
        del result
        optim_wrapper.zero_grad()
        snapshot.restore(model)
        del snapshot
        gc.collect()
        if device.type == 'cuda':
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        done = [p.use_memory_fallback(model.student) for p in plugins
                if p.memory_fallback() is not None]
        if not done:  # another process ran out; this one has nothing left either
            raise torch.OutOfMemoryError(
                f'Iteration {iteration}: another process ran out of memory and no '
                'plug-in has a memory fallback left')
        changes = done
        print_log(f'Iteration {iteration}: out of memory; replaying the step with '
                  f'{"; ".join(done)} (same random numbers)', logger='current',
                  level=30)

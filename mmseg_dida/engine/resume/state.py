"""The training state a checkpoint needs besides weights, optimiser and schedulers,
so that a resumed run continues exactly as the uninterrupted one.

* the process random states: python ``random``, numpy's global generator, torch's
  CPU generator and, when CUDA is initialised, every CUDA device's generator;
* the state of every object with its own generator -- any module of the model and
  any (nested) training dataset that offers ``rng_state()`` and
  ``set_rng_state(state, device=None)`` (DiDA's degradation module drawing t and
  eps, the UDA pairing's draws of target samples and rare classes). They are found
  by duck typing, so this module imports no method.

One :func:`capture` per process; the checkpoint holds the list over ranks. The data
position needs no entry: it is the iteration count (one batch per iteration).
"""
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from mmengine.model import is_model_wrapper

from ...utils.random_state import (
    has_rng_state,
    module_device,
    module_generators,
    process_rng_state,
    set_process_rng_state,
)

__all__ = ['process_rng_state', 'set_process_rng_state', 'stateful_generators',
           'capture', 'restore']


def _datasets(dataset, name: str = 'data') -> Iterator[Tuple[str, object]]:
    """The dataset and the datasets it wraps (``dataset``/``datasets`` attributes of
    mmengine's wrappers, ``source``/``target`` of the UDA pairing)."""
    yield name, dataset
    for attr in ('dataset', 'source', 'target'):
        inner = getattr(dataset, attr, None)
        if inner is not None and inner is not dataset and hasattr(inner, '__getitem__'):
            yield from _datasets(inner, f'{name}.{attr}')
    for i, inner in enumerate(getattr(dataset, 'datasets', None) or []):
        yield from _datasets(inner, f'{name}.datasets[{i}]')


def stateful_generators(model: torch.nn.Module, dataset=None) -> Dict[str, object]:
    """Objects with their own generator: modules of ``model`` and (nested) datasets
    of ``dataset`` that offer ``rng_state``/``set_rng_state``, by name."""
    if is_model_wrapper(model):
        model = model.module
    found = {f'model.{n}' if n else 'model': m
             for n, m in module_generators(model).items()}
    if dataset is not None:
        found.update({n: d for n, d in _datasets(dataset) if has_rng_state(d)})
    return found


def capture(model: torch.nn.Module, dataset=None,
            process_state: Optional[dict] = None) -> dict:
    """This process's resume state: the process random states (``process_state`` if
    given, e.g. taken before a validation) and every stateful generator's state."""
    gens = stateful_generators(model, dataset)
    return dict(process=process_state or process_rng_state(),
                generators={n: g.rng_state() for n, g in gens.items()})


def restore(state: dict, model: torch.nn.Module, dataset=None
            ) -> Tuple[List[str], List[str]]:
    """Restore :func:`capture`. Returns (generators restored, generators of the
    checkpoint or of this run that have no counterpart -- a changed config)."""
    gens = stateful_generators(model, dataset)
    saved = state['generators']
    set_process_rng_state(state['process'])
    restored = []
    for name, obj in gens.items():
        if name in saved:
            obj.set_rng_state(saved[name], module_device(obj))
            restored.append(name)
    unmatched = sorted(set(saved) ^ set(gens))
    return sorted(restored), unmatched

"""DiDA's ``memory_saving`` modes: how the degraded passes bound their memory.

One name from the config to its use: ``DiDA(memory_saving=...)`` validates the name
here, decides with :attr:`MemorySaving.per_domain` whether the source and target
degraded passes are separate loss groups, and hands the same name to the
:class:`~mmseg_dida.models.backbones.DiffusionEncoder`, which reads
:attr:`~MemorySaving.checkpoint_g_prime` and :attr:`~MemorySaving.checkpoint_g`.
The losses and gradients are the same in every mode (up to float rounding; with
BatchNorm in training mode the batch statistics of per-domain passes are those of
each domain's batch).

``'auto'`` is not a mode but a choice made while training: start with the fastest
mode and, whenever a step runs out of GPU memory, replay that step with the next mode
of :data:`MEMORY_SAVING` (same random numbers, nothing of the failed attempt kept:
:mod:`mmseg_dida.models.uda.memory_fallback`). The run thus settles at the fastest
mode that fits the card; on a CPU it stays at the fastest.
"""
from typing import NamedTuple, Optional

__all__ = ['MemorySaving', 'MEMORY_SAVING', 'DEFAULT_MEMORY_SAVING', 'AUTO',
           'memory_saving_mode', 'check_memory_saving', 'initial_memory_saving',
           'next_memory_saving']


class MemorySaving(NamedTuple):
    """What a mode does.

    Attributes:
        per_domain: The degraded source pass and the degraded target pass are two
            loss groups, each back-propagated before the next is computed: the
            activations of one domain are held at a time (no recomputation).
        checkpoint_g_prime: Activation checkpointing of g' (its forward is
            recomputed in backward: one more g' forward per step).
        checkpoint_g: Activation checkpointing of g in the degraded passes (the
            clean path is never checkpointed), so that g's and g''s activations are
            not held together.
    """
    per_domain: bool
    checkpoint_g_prime: bool
    checkpoint_g: bool


# Memory 'none' > 'per_domain' > 'g_prime' > 'encoders'; time the other way
# (docs/RESULTS.md, tools/benchmarks/gpu_memory.py). 'auto' walks this
# order, so it must stay fastest first.
MEMORY_SAVING = {
    'none': MemorySaving(per_domain=False, checkpoint_g_prime=False, checkpoint_g=False),
    'per_domain': MemorySaving(per_domain=True, checkpoint_g_prime=False,
                               checkpoint_g=False),
    'g_prime': MemorySaving(per_domain=True, checkpoint_g_prime=True, checkpoint_g=False),
    'encoders': MemorySaving(per_domain=True, checkpoint_g_prime=True, checkpoint_g=True),
}
DEFAULT_MEMORY_SAVING = 'none'  # one batched degraded pass, one backward
AUTO = 'auto'


def check_memory_saving(name: str, owner: str, allow_auto: bool = True) -> str:
    """``name`` if it is a mode (or, with ``allow_auto``, ``'auto'``); else a
    ValueError naming ``owner`` and the choices. The one validator of the names."""
    choices = list(MEMORY_SAVING) + ([AUTO] if allow_auto else [])
    if not isinstance(name, str) or name not in choices:
        raise ValueError(f'{owner}: memory_saving must be one of {choices}, '
                         f'got {name!r}')
    return name


def memory_saving_mode(name: str, owner: str) -> MemorySaving:
    """The mode called ``name`` (:func:`check_memory_saving`, ``'auto'`` refused)."""
    return MEMORY_SAVING[check_memory_saving(name, owner, allow_auto=False)]


def initial_memory_saving(name: str) -> str:
    """The mode a run configured with ``name`` starts in: ``name`` itself, or the
    fastest mode for ``'auto'``."""
    return next(iter(MEMORY_SAVING)) if name == AUTO else name


def next_memory_saving(name: str) -> Optional[str]:
    """The mode after ``name`` in :data:`MEMORY_SAVING` (less memory, more time), or
    None after the last."""
    names = list(MEMORY_SAVING)
    i = names.index(name)
    return names[i + 1] if i + 1 < len(names) else None

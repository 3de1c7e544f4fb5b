from .checkpoint_hook import ResumableCheckpointHook  # noqa: F401
from .dida_hook import DiDAHook  # noqa: F401

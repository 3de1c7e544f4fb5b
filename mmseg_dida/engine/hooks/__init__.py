
from .dida_hook import DiDAHook  # noqa: F401

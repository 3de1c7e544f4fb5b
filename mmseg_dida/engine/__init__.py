from . import hooks, resume  # noqa: F401
from .loops import MultiTestLoop, MultiValLoop  # noqa: F401
from .mixed_precision import BF16OptimWrapper  # noqa: F401
from .runner import UDARunner  # noqa: F401
from .speed_options import SpeedOptimWrapperConstructor  # noqa: F401

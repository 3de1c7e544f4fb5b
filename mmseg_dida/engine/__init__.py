from . import hooks  # noqa: F401
from .bf16_optim_wrapper import BF16OptimWrapper  # noqa: F401
from .loops import MultiTestLoop, MultiValLoop  # noqa: F401
from .runner import UDARunner  # noqa: F401
from .speed_options import SpeedOptimWrapperConstructor, SpeedOptionsHook  # noqa: F401

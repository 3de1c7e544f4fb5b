from .checks import CheckFiles, CheckSegLabel  # noqa: F401
from .formatting import PackUDAInputs  # noqa: F401
from .pseudo_margins import GenerateValidPseudoMask  # noqa: F401

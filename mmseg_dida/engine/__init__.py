from . import hooks  # noqa: F401
from .loops import MultiTestLoop, MultiValLoop  # noqa: F401

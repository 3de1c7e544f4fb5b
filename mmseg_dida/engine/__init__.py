from . import hooks  # noqa: F401
from .loops import MultiValLoop, MultiTestLoop  # noqa: F401

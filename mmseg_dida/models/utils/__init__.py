
from .degradation import Degradation  # noqa: F401

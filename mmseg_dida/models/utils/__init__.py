
from .degradation import Degradation  # noqa: F401
from .weight_loading import CheckedPretrained, load_pretrained_checked  # noqa: F401

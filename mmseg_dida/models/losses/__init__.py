
from .dic_loss import DICLoss  # noqa: F401

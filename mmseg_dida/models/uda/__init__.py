from .dacs import DACS, batch_confidence_weight  # noqa: F401
from .dida import DiDA  # noqa: F401
from .ema_teacher import EMATeacher, ema_alpha  # noqa: F401
from .mic import MIC, block_mask  # noqa: F401
from .plugin import BaseUDAPlugin, UDAStepContext  # noqa: F401
from .wrappers import UDADistributedWrapper  # noqa: F401

from .checkpoint_hook import ResumableCheckpointHook  # noqa: F401
from .dida_hook import DiDAHook  # noqa: F401
from .graceful_stop_hook import STOP_EXIT_STATUS, GracefulStopHook, TrainingStopped  # noqa: F401
from .nonfinite_hook import NonFiniteLossError, NonFiniteLossHook  # noqa: F401
from .pseudo_label_hook import PseudoLabelStatsHook  # noqa: F401
from .runtime_info_hook import DeferredRuntimeInfoHook  # noqa: F401
from .uda_vis_hook import UDAVisualizationHook  # noqa: F401

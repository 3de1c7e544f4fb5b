from .dida_hook import DiDAHook  # noqa: F401
from .nonfinite_hook import NonFiniteLossError, NonFiniteLossHook  # noqa: F401
from .pseudo_label_hook import PseudoLabelStatsHook  # noqa: F401
from .runtime_info_hook import DeferredRuntimeInfoHook  # noqa: F401
from .speed_options_hook import SpeedOptionsHook  # noqa: F401
from .uda_vis_hook import UDAVisualizationHook  # noqa: F401

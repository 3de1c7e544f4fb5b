from .dida_hook import DiDAHook  # noqa: F401
from .uda_vis_hook import UDAVisualizationHook  # noqa: F401

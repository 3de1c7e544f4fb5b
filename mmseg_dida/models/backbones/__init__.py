
from .diffusion_encoder import DiffusionEncoder  # noqa: F401

from .plugin import BaseUDAPlugin, UDAStepContext  # noqa: F401

from .uda_dataset import UDADataset  # noqa: F401

"""Evaluation metrics of the UDA benchmarks (registered into mmseg's METRICS)."""
from .metrics import SubsetIoUMetric  # noqa: F401

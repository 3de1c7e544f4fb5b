"""mmseg-dida: DiDA (degradation as a domain bridge) and the self-training methods
DAFormer, HRDA and MIC on MMSegmentation 1.x.

Importing this package makes mmseg importable without compiled mmcv ops, lets the
runner load its own checkpoints on torch >= 2.6 (see :mod:`mmseg_dida.compat`) and
registers every component into mmseg's registries (``default_scope='mmseg'``).
"""
from . import compat

compat.apply()

from . import datasets, engine, evaluation, models  # noqa: E402,F401

__version__ = '0.1.0'

"""Dark Zurich (Sakaridis et al., "Guided Curriculum Model Adaptation", ICCV 2019)."""
from mmseg.datasets import DarkZurichDataset
from mmseg.registry import DATASETS

from .checked_files import CheckedFilesMixin


@DATASETS.register_module()
class CheckedDarkZurichDataset(CheckedFilesMixin, DarkZurichDataset):
    """mmseg's ``DarkZurichDataset`` with this project's file checks.

    ``rgb_anon/train/night/<seq>/<name>_rgb_anon.png`` (unlabelled: leave
    ``seg_map_path`` out of ``data_prefix``) and ``rgb_anon/val/night/<seq>/...`` with
    ``gt/val/night/<seq>/<name>_gt_labelTrainIds.png``.
    """

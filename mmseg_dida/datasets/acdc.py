"""ACDC (Sakaridis et al., "ACDC: The Adverse Conditions Dataset", ICCV 2021)."""
from mmseg.datasets import CityscapesDataset
from mmseg.registry import DATASETS

from .checked_files import CheckedFilesMixin


@DATASETS.register_module()
class ACDCDataset(CheckedFilesMixin, CityscapesDataset):
    """ACDC restructured as in the DAFormer/MIC READMEs (see data/README.md):
    ``rgb_anon/{train,val}/<name>_rgb_anon.png`` and
    ``gt/{train,val}/<name>_gt_labelTrainIds.png`` (the trainId files ship with ACDC).

    Files are found recursively, so the published ``<condition>/<split>/<sequence>/``
    layout also works with ``data_prefix`` pointing at one condition's split.
    """

    def __init__(self, img_suffix='_rgb_anon.png',
                 seg_map_suffix='_gt_labelTrainIds.png', **kwargs):
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

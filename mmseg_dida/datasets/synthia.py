"""SYNTHIA RAND-CITYSCAPES (Ros et al., CVPR 2016) as a UDA source."""
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .checked_files import CheckedFilesMixin
from .label_tables import CITYSCAPES_METAINFO


@DATASETS.register_module()
class SynthiaDataset(CheckedFilesMixin, BaseSegDataset):
    """SYNTHIA: ``RGB/0000000.png`` with ``GT/LABELS/0000000_labelTrainIds.png``.

    The trainId files are written by ``tools/convert_datasets/synthia.py`` from the raw
    16-bit ``GT/LABELS/0000000.png``. SYNTHIA labels 16 of the 19 Cityscapes classes (no
    terrain, truck, train): SYNTHIA->Cityscapes is evaluated with ``SubsetIoUMetric``,
    which reports the 16-class mIoU next to the 19-class one.
    """
    METAINFO = CITYSCAPES_METAINFO

    def __init__(self,
                 img_suffix='.png',
                 seg_map_suffix='_labelTrainIds.png',
                 **kwargs):
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

"""GTA5 (Richter et al., "Playing for Data", ECCV 2016) as a UDA source."""
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .checked_files import CheckedFilesMixin
from .label_tables import CITYSCAPES_METAINFO


@DATASETS.register_module()
class GTADataset(CheckedFilesMixin, BaseSegDataset):
    """GTA5: ``images/00001.png`` with ``labels/00001_labelTrainIds.png``.

    The trainId files are written by ``tools/convert_datasets/gta.py`` from the raw
    ``labels/00001.png`` (Cityscapes label ids). Typical config: ``data_root='data/gta',
    data_prefix=dict(img_path='images', seg_map_path='labels')``. 19 Cityscapes classes.
    """
    METAINFO = CITYSCAPES_METAINFO

    def __init__(self,
                 img_suffix='.png',
                 seg_map_suffix='_labelTrainIds.png',
                 **kwargs):
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

"""Label tables of the UDA benchmarks: raw label ids -> Cityscapes trainIds.

Every benchmark of the paper (GTA->Cityscapes, SYNTHIA->Cityscapes, Cityscapes->ACDC,
Cityscapes->Dark Zurich) is scored on the 19 Cityscapes training classes. The tables
here are the public label definitions, written out so that no dependency on
``cityscapesscripts`` is needed:

* :data:`CITYSCAPES_ID_TO_TRAINID` -- ``cityscapesscripts/helpers/labels.py``
  (ids 0-33; GTA5 labels use the same ids, Richter et al., ECCV 2016).
* :data:`SYNTHIA_ID_TO_TRAINID` -- the class table of
  ``SYNTHIA_RAND_CITYSCAPES/README.txt`` (ids 0-22), mapped to Cityscapes trainIds as
  DAFormer's ``tools/convert_datasets/synthia.py`` does.

Ids present in a table but not used for training map to :data:`IGNORE_INDEX`. Ids absent
from a table are not a label of that dataset: :func:`convert_label` raises on them.
"""
from typing import Dict, Mapping, Optional

import numpy as np

__all__ = [
    'IGNORE_INDEX', 'CITYSCAPES_CLASSES', 'CITYSCAPES_PALETTE', 'CITYSCAPES_METAINFO',
    'CITYSCAPES_ID_TO_TRAINID', 'SYNTHIA_ID_TO_TRAINID', 'SYNTHIA_16_CLASSES',
    'SYNTHIA_13_CLASSES', 'LabelConversionError', 'lookup_table', 'convert_label',
    'class_pixel_counts'
]

IGNORE_INDEX = 255

CITYSCAPES_CLASSES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole',
                      'traffic light', 'traffic sign', 'vegetation', 'terrain', 'sky',
                      'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle',
                      'bicycle')
CITYSCAPES_PALETTE = [[128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156],
                      [190, 153, 153], [153, 153, 153], [250, 170, 30], [220, 220, 0],
                      [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60],
                      [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100],
                      [0, 80, 100], [0, 0, 230], [119, 11, 32]]
CITYSCAPES_METAINFO = dict(classes=CITYSCAPES_CLASSES, palette=CITYSCAPES_PALETTE)

_I = IGNORE_INDEX
# Cityscapes label id -> trainId (cityscapesscripts labels.py). 'license plate' has
# id -1 and never appears in a uint8 label image.
CITYSCAPES_ID_TO_TRAINID: Dict[int, int] = {
    0: _I, 1: _I, 2: _I, 3: _I, 4: _I, 5: _I, 6: _I,  # void, ego, border, roi, ...
    7: 0, 8: 1, 9: _I, 10: _I, 11: 2, 12: 3, 13: 4,  # road .. fence
    14: _I, 15: _I, 16: _I,  # guard rail, bridge, tunnel
    17: 5, 18: _I, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 29: _I, 30: _I,  # caravan, trailer
    31: 16, 32: 17, 33: 18,
}

# SYNTHIA RAND-CITYSCAPES id -> Cityscapes trainId. SYNTHIA has no terrain (9), truck
# (14) or train (16) pixels; void (0), parking-slot (13), road-work (14) and
# lanemarking (22) are ignored.
SYNTHIA_ID_TO_TRAINID: Dict[int, int] = {
    0: _I,  # void
    1: 10,  # sky
    2: 2,  # building
    3: 0,  # road
    4: 1,  # sidewalk
    5: 4,  # fence
    6: 8,  # vegetation
    7: 5,  # pole
    8: 13,  # car
    9: 7,  # traffic sign
    10: 11,  # pedestrian -> person
    11: 18,  # bicycle
    12: 17,  # motorcycle
    13: _I,  # parking-slot
    14: _I,  # road-work
    15: 6,  # traffic light
    16: 9,  # terrain
    17: 12,  # rider
    18: 14,  # truck
    19: 15,  # bus
    20: 16,  # train
    21: 3,  # wall
    22: _I,  # lanemarking
}

# The classes SYNTHIA labels: UDA papers report SYNTHIA->Cityscapes mIoU over these 16
# (and, in older work, over the 13 without wall, fence and pole).
SYNTHIA_16_CLASSES = tuple(c for c in CITYSCAPES_CLASSES
                           if c not in ('terrain', 'truck', 'train'))
SYNTHIA_13_CLASSES = tuple(c for c in SYNTHIA_16_CLASSES
                           if c not in ('wall', 'fence', 'pole'))


class LabelConversionError(ValueError):
    """A label image holds an id that its dataset's label table does not define."""


def lookup_table(id_to_trainid: Mapping[int, int], size: int = 65536) -> np.ndarray:
    """A dense lookup table; ids missing from ``id_to_trainid`` hold -1."""
    lut = np.full(size, -1, dtype=np.int32)
    for k, v in id_to_trainid.items():
        if k >= 0:
            lut[k] = v
    return lut


def convert_label(label: np.ndarray, id_to_trainid: Mapping[int, int],
                  source: Optional[str] = None) -> np.ndarray:
    """Map a raw label-id image to a uint8 trainId image.

    Args:
        label (np.ndarray): Integer label ids, any shape (uint8 or uint16).
        id_to_trainid (Mapping[int, int]): The dataset's table.
        source (str, optional): File name used in the error message.

    Raises:
        LabelConversionError: When an id of ``label`` is not in the table.
    """
    if not np.issubdtype(label.dtype, np.integer):
        raise LabelConversionError(
            f'{source or "label"}: label ids must be integers, got {label.dtype}')
    lut = lookup_table(id_to_trainid)
    if label.size and (label.min() < 0 or label.max() >= lut.size):
        raise LabelConversionError(
            f'{source or "label"}: label ids outside [0, {lut.size}) in the image')
    out = lut[label]
    if (out < 0).any():
        unknown = sorted(int(i) for i in np.unique(label[out < 0]))
        raise LabelConversionError(
            f'{source or "label"}: label id(s) {unknown} are not in the label table '
            f'(known ids: {sorted(id_to_trainid)})')
    return out.astype(np.uint8)


def class_pixel_counts(train_ids: np.ndarray, num_classes: int = 19) -> Dict[int, int]:
    """Pixels per class of a trainId image, classes with zero pixels left out."""
    counts = np.bincount(train_ids.ravel(), minlength=256)[:num_classes]
    return {int(c): int(n) for c, n in enumerate(counts) if n > 0}

"""Your own data: images and label files in any folders, the class table in the config.

The class table is part of the dataset's config: ``metainfo=dict(classes=...,
palette=...)`` (a class's train id is its position in ``classes``) and, when the label
files hold other ids than the train ids (for example Cityscapes label ids, or ids of a
labelling tool), ``label_ids``: the raw id(s) of each class in the order of ``classes``,
and ``ignore_ids``: the raw ids of unlabelled pixels (they become ``ignore_index``).
The template is ``configs/_base_/datasets/uda_custom_template.py``.

With ``label_ids``, every label this dataset loads goes through :class:`MapLabelIds`
right after ``LoadAnnotations`` (the dataset puts it there; configs write the usual
pipeline): one table lookup, raw id -> train id, and a raw id the table does not list is
a :class:`~mmseg_dida.datasets.transforms.checks.DataError` naming the file and the id,
never a silent class or ignore.
"""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.datasets import BaseSegDataset
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import DATASETS

from .checked_files import CheckedFilesMixin
from .label_tables import LabelConversionError, convert_label
from .transforms.checks import DataError

__all__ = ['CustomSegDataset', 'MapLabelIds', 'label_table']

_MAX_ID = 65535  # label files are 8- or 16-bit PNGs


def _is_id(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and \
        0 <= int(value) <= _MAX_ID


def label_table(num_classes: int, label_ids: Sequence[Union[int, Sequence[int]]],
                ignore_ids: Sequence[int] = (), ignore_index: int = 255,
                name: str = 'CustomSegDataset') -> Dict[int, int]:
    """The raw id -> train id table of a class table.

    Args:
        num_classes: Number of classes (train ids ``0 .. num_classes - 1``).
        label_ids: For each class, in train-id order, its raw id or a list of raw ids.
        ignore_ids: Raw ids of unlabelled pixels; they map to ``ignore_index``.
        name: Used in the error messages.

    Raises:
        ValueError: one line, when the lengths differ, an id is not an integer in
            [0, 65535], a class has no raw id, or a raw id is listed twice.
    """
    if isinstance(label_ids, (str, bytes)) or not isinstance(label_ids, Sequence) or \
            len(label_ids) != num_classes:
        raise ValueError(f'{name}: label_ids needs one entry (a raw id or a list of raw '
                         f'ids) per class, {num_classes} in all, got {label_ids!r}')
    if not isinstance(ignore_ids, (list, tuple)):
        raise ValueError(f'{name}: ignore_ids must be a list of raw ids, got '
                         f'{ignore_ids!r}')
    rows = [(f'label_ids[{c}]', c, ids) for c, ids in enumerate(label_ids)]
    rows += [('ignore_ids', ignore_index, ids) for ids in ignore_ids]
    table: Dict[int, int] = {}
    for what, train_id, ids in rows:
        ids = list(ids) if isinstance(ids, (list, tuple)) else [ids]
        if not ids:
            raise ValueError(f'{name}: {what} is empty; every class needs a raw id')
        for raw in ids:
            if not _is_id(raw):
                raise ValueError(f'{name}: {what} holds {raw!r}; raw label ids are '
                                 f'integers in [0, {_MAX_ID}]')
            if int(raw) in table:
                raise ValueError(f'{name}: raw label id {raw} is listed twice (for '
                                 f'train ids {table[int(raw)]} and {train_id})')
            table[int(raw)] = train_id
    return table


class MapLabelIds(BaseTransform):
    """Map a loaded label map from raw ids to train ids; an id the table does not list
    raises :class:`DataError` (one line naming the file and the ids).

    Put right after ``LoadAnnotations`` by :class:`CustomSegDataset`.

    Args:
        table: raw id -> train id (:func:`label_table`).
    """

    def __init__(self, table: Dict[int, int]):
        self.table = dict(table)

    def transform(self, results: dict) -> dict:
        label = results.get('gt_seg_map')
        if label is None:
            return results
        path = results.get('seg_map_path') or 'label'
        try:
            results['gt_seg_map'] = convert_label(label, self.table, source=path)
        except LabelConversionError as e:
            raise DataError(f'label {e}; add the id(s) to label_ids or ignore_ids of '
                            'the class table in the config') from None
        return results

    def __repr__(self):
        return f'{type(self).__name__}({len(self.table)} raw ids)'


@DATASETS.register_module()
class CustomSegDataset(CheckedFilesMixin, BaseSegDataset):
    """A labelled or unlabelled dataset of your own, its class table in the config.

    Images and labels are found recursively under ``data_prefix``'s ``img_path`` and
    ``seg_map_path``; an image ``<name><img_suffix>`` has the label
    ``<name><seg_map_suffix>`` at the same relative path (no ``seg_map_path``: an
    unlabelled dataset, such as a target's training split). Labels are single-channel
    PNGs.

    Args:
        metainfo (dict): ``classes`` (names, train id = position) and ``palette`` (one
            RGB colour per class).
        label_ids (list, optional): Raw id(s) of each class in the label files, in the
            order of ``classes``; the loaded labels are mapped to train ids
            (:class:`MapLabelIds`). None (default): the files hold train ids
            ``0 .. N-1`` and ``ignore_index`` already.
        ignore_ids (list[int]): Raw ids of unlabelled pixels (only with ``label_ids``).
        img_suffix (str): Image file name ending. Default '.png'.
        seg_map_suffix (str): Label file name ending. Default '.png'.
        **kwargs: ``BaseSegDataset``'s arguments (``data_root``, ``data_prefix``,
            ``pipeline``, ``ignore_index``, ...).
    """
    METAINFO: dict = dict()  # the classes come from the config

    def __init__(self,
                 metainfo: Optional[dict] = None,
                 label_ids: Optional[List] = None,
                 ignore_ids: Sequence[int] = (),
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '.png',
                 **kwargs):
        name = type(self).__name__
        classes = (metainfo or {}).get('classes')
        palette = (metainfo or {}).get('palette')
        if isinstance(classes, str) or not isinstance(classes, Sequence) or \
                not classes or not all(isinstance(c, str) for c in classes):
            raise ValueError(f'{name}: metainfo.classes must be a list of class names, '
                             f'got {classes!r}')
        if len(set(classes)) != len(classes):
            raise ValueError(f'{name}: metainfo.classes names a class twice: '
                             f'{list(classes)}')
        if not isinstance(palette, Sequence) or len(palette) != len(classes) or not all(
                isinstance(p, Sequence) and len(p) == 3 and all(
                    _is_id(v) and int(v) <= 255 for v in p) for p in palette):
            raise ValueError(f'{name}: metainfo.palette needs one [R, G, B] colour '
                             f'(0-255) per class, {len(classes)} in all, got {palette!r}')
        self.label_table = None
        if label_ids is not None:
            if kwargs.get('reduce_zero_label'):
                raise ValueError(f'{name}: reduce_zero_label and label_ids both map the '
                                 'label ids; list the raw ids in label_ids only')
            self.label_table = label_table(
                len(classes), label_ids, ignore_ids, kwargs.get('ignore_index', 255),
                name)
        elif ignore_ids:
            raise ValueError(f'{name}: ignore_ids needs label_ids (without them the '
                             'label files hold train ids and ignore_index already)')
        super().__init__(metainfo=dict(metainfo), img_suffix=img_suffix,
                         seg_map_suffix=seg_map_suffix, **kwargs)
        if self.label_table is not None:
            transforms = self.pipeline.transforms
            for i in reversed(range(len(transforms))):
                if isinstance(transforms[i], LoadAnnotations):
                    transforms.insert(i + 1, MapLabelIds(self.label_table))

"""File checks shared by the datasets of the UDA benchmarks.

An empty or missing image folder, and a sample whose image or label file is missing,
raise :class:`FileNotFoundError` naming the folder or file, once, when the data list is
loaded. A dataset without ``seg_map_path`` in ``data_prefix`` is unlabelled (e.g. Dark
Zurich train): its samples carry no label path, and target pipelines then omit
``LoadAnnotations``.
"""
import os.path as osp
from typing import List


class CheckedFilesMixin:
    """Validates the data list of an mmseg ``BaseSegDataset`` once, at load."""

    def load_data_list(self) -> List[dict]:
        img_dir = self.data_prefix.get('img_path', None)
        name = type(self).__name__
        if not img_dir or not osp.isdir(img_dir):
            raise FileNotFoundError(f'{name}: image folder {img_dir} does not exist')
        data_list = super().load_data_list()
        if not data_list:
            raise FileNotFoundError(
                f'{name}: no image ending in "{self.img_suffix}" under {img_dir}')
        for info in data_list:
            if not osp.isfile(info['img_path']):
                raise FileNotFoundError(
                    f"{name}: image {info['img_path']} does not exist")
            if 'seg_map_path' in info and not osp.isfile(info['seg_map_path']):
                raise FileNotFoundError(
                    f"{name}: label {info['seg_map_path']} of image {info['img_path']} "
                    'does not exist (convert the labels to trainIds first, see '
                    'data/README.md)')
        return data_list

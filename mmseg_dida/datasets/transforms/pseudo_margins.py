"""The pseudo-label margin mask of HRDA/MIC (``crop_pseudo_margins``).

HRDA and MIC do not trust target pseudo labels near the image border of Cityscapes-like
targets (rectification artefacts make pseudo labels drift, e.g. sky towards building):
``crop_pseudo_margins=[30, 240, 30, 30]`` zeroes the pseudo-label weight in the top 30,
bottom 240, left 30 and right 30 rows/columns of the *original* image. The mask is made
at load time and then travels through ``Resize``/``RandomCrop``/``RandomFlip`` as a
label map (it is registered in ``seg_fields``), and ``PackUDAInputs`` packs it as
``data_sample.valid_pseudo_mask``.
"""
from typing import Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class GenerateValidPseudoMask(BaseTransform):
    """Add ``results['valid_pseudo_mask']`` (uint8, 1 = pseudo label usable).

    Place it right after ``LoadImageFromFile`` (and ``LoadAnnotations`` if any), before
    any geometric transform, so that margins are in original-image pixels.

    Args:
        margins (Sequence[int]): ``[top, bottom, left, right]`` margins in pixels where
            the mask is 0. HRDA/MIC on Cityscapes-like targets: ``[30, 240, 30, 30]``.
    """

    def __init__(self, margins: Sequence[int] = (30, 240, 30, 30)):
        margins = tuple(int(m) for m in margins)
        if len(margins) != 4 or min(margins) < 0:
            raise ValueError(
                'GenerateValidPseudoMask: margins must be four non-negative ints '
                f'[top, bottom, left, right], got {margins}')
        self.margins = margins

    def transform(self, results: dict) -> dict:
        h, w = results['img'].shape[:2]
        top, bottom, left, right = self.margins
        mask = np.zeros((h, w), dtype=np.uint8)
        # Explicit end indices: a margin of 0 must not become a [-0:] slice.
        mask[top:max(h - bottom, 0), left:max(w - right, 0)] = 1
        results['valid_pseudo_mask'] = mask
        seg_fields = results.setdefault('seg_fields', [])
        if 'valid_pseudo_mask' not in seg_fields:
            seg_fields.append('valid_pseudo_mask')
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(margins={list(self.margins)})'

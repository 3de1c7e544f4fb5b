"""Packing of UDA samples: mmseg's ``PackSegInputs`` plus the pseudo-label mask."""
import numpy as np
import torch
from mmengine.structures import PixelData
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PackUDAInputs(PackSegInputs):
    """``PackSegInputs`` that also packs ``valid_pseudo_mask`` when present.

    The mask (from ``GenerateValidPseudoMask``) becomes
    ``data_sample.valid_pseudo_mask = PixelData(data=uint8 tensor (1, H, W))``. Without
    the mask this transform is exactly ``PackSegInputs``.
    """

    def transform(self, results: dict) -> dict:
        packed = super().transform(results)
        mask = results.get('valid_pseudo_mask', None)
        if mask is not None:
            img_shape = results['img'].shape[:2]
            if mask.shape[:2] != img_shape:
                raise ValueError(
                    f'PackUDAInputs: valid_pseudo_mask has shape {mask.shape[:2]} but '
                    f'the image {img_shape}; a transform between '
                    'GenerateValidPseudoMask and PackUDAInputs does not handle '
                    "results['seg_fields']")
            data = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))[None]
            packed['data_samples'].valid_pseudo_mask = PixelData(data=data)
        return packed

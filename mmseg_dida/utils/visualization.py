"""Turning what a UDA step holds into pictures: class labels in the Cityscapes
palette, normalised images back to colours, [0, 1] maps (confidences, masks) as
heat maps, and panels of named tiles.

Used by :class:`~mmseg_dida.engine.hooks.UDAVisualizationHook`, the x_t strip of
:class:`~mmseg_dida.engine.hooks.DiDAHook` and ``tools/infer.py``. Every function
takes tensors or arrays and returns uint8 RGB arrays (H, W, 3).
"""
from typing import Dict, Optional, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = ['IGNORE_INDEX', 'label_palette', 'dataset_palette', 'colourise',
           'denormalise', 'heatmap', 'to_tiles', 'panel']

IGNORE_INDEX = 255

#: The 19 Cityscapes train-id colours (RGB), the palette every dataset of this
#: project is labelled in.
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32))


def label_palette() -> np.ndarray:
    """(256, 3) uint8 RGB: Cityscapes colours for ids 0..18, fixed (seeded) colours
    for further ids, black for 255 (ignore / no label)."""
    colours = np.random.default_rng(0).integers(0, 256, (256, 3)).astype(np.uint8)
    colours[:len(CITYSCAPES_PALETTE)] = np.array(CITYSCAPES_PALETTE, np.uint8)
    colours[IGNORE_INDEX] = 0
    return colours


def dataset_palette(cfg) -> np.ndarray:
    """(256, 3) uint8 RGB: the palette of the test (else val) dataset of ``cfg``
    (its ``metainfo.palette``, or its class's ``METAINFO``) for its class ids, the
    colours of :func:`label_palette` for the rest; :func:`label_palette` itself when
    the config names no dataset with a palette."""
    from mmseg.registry import DATASETS
    colours = label_palette()
    for key in ('test_dataloader', 'val_dataloader'):
        dataset = ((cfg.get(key, None) or {}).get('dataset') or {})
        palette = (dataset.get('metainfo') or {}).get('palette')
        if palette is None and isinstance(dataset.get('type'), str):
            cls = DATASETS.get(dataset['type'])
            palette = getattr(cls, 'METAINFO', {}).get('palette')
        if palette:
            colours[:len(palette)] = np.asarray(palette, np.uint8)
            return colours
    return colours


def colourise(labels, colours: Optional[np.ndarray] = None) -> np.ndarray:
    """Class ids (H, W) (array or tensor; ids outside 0..255 shown as 255) -> RGB."""
    if isinstance(labels, Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    labels = np.where((labels < 0) | (labels > 255), IGNORE_INDEX, labels).astype(
        np.uint8)
    return (label_palette() if colours is None else colours)[labels]


def denormalise(image: Tensor, mean: Optional[Tensor] = None,
                std: Optional[Tensor] = None) -> np.ndarray:
    """A normalised image (3, H, W) -> RGB uint8 (H, W, 3): ``x * std + mean``
    clipped to 0..255 (the data preprocessor's inverse, after its BGR -> RGB)."""
    x = image.detach().float().cpu()
    if mean is not None:
        x = x * std.detach().float().cpu().reshape(3, 1, 1) + (
            mean.detach().float().cpu().reshape(3, 1, 1))
    return x.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()


def heatmap(values: Tensor) -> np.ndarray:
    """A map (H, W) -> RGB heat map (viridis). Values in [0, 1] are drawn as they
    are (confidences, weights, masks); any other range is scaled to its min..max."""
    v = values.detach().float().cpu()
    lo, hi = float(v.min()), float(v.max())
    if lo < 0 or hi > 1:
        v = (v - lo) / max(hi - lo, 1e-12)
    grey = (v.clamp(0, 1) * 255).round().byte().numpy()
    return cv2.applyColorMap(grey, cv2.COLORMAP_VIRIDIS)[..., ::-1].copy()


def to_tiles(value: Tensor, mean: Optional[Tensor] = None,
             std: Optional[Tensor] = None, limit: Optional[int] = None
             ) -> list:
    """The pictures of one named batch tensor, one per image (at most ``limit``):
    integer (N, H, W) or (N, 1, H, W) -> labels in the palette; float
    (N, 3, H, W) -> normalised images; float (N, H, W) or (N, 1, H, W) -> heat maps.
    An (H, W) tensor is one label map or heat map."""
    if not isinstance(value, Tensor):
        raise TypeError(f'to_tiles: expected a tensor, got {type(value).__name__}')
    v = value.detach()
    integer = not torch.is_floating_point(v) and v.dtype != torch.bool
    if v.dim() == 2:
        v = v[None]
    if v.dim() == 4 and v.shape[1] == 1:
        v = v[:, 0]
    v = v[:limit] if limit else v
    if integer:
        return [colourise(x) for x in v]
    if v.dim() == 4 and v.shape[1] == 3:
        return [denormalise(x, mean, std) for x in v]
    if v.dim() == 3:
        return [heatmap(x.float()) for x in v]
    raise ValueError(f'to_tiles: cannot draw a tensor of shape {tuple(value.shape)}')


def _fit(tile: np.ndarray, h: int, w: int) -> np.ndarray:
    if tile.shape[:2] == (h, w):
        return tile
    return cv2.resize(tile, (w, h), interpolation=cv2.INTER_NEAREST)


def panel(columns: Dict[str, Sequence[np.ndarray]], header: int = 14,
          gap: int = 2) -> np.ndarray:
    """Named columns of tiles -> one RGB picture: a title row with the names, then
    one row per image; tiles are scaled (nearest) to the first tile's size."""
    if not columns:
        raise ValueError('panel: nothing to draw')
    first = next(iter(columns.values()))[0]
    h, w = first.shape[:2]
    rows = max(len(tiles) for tiles in columns.values())
    cols = len(columns)
    out = np.full((header + rows * (h + gap), cols * (w + gap), 3), 255, np.uint8)
    for c, (name, tiles) in enumerate(columns.items()):
        x = c * (w + gap)
        cv2.putText(out, name[:max(1, w // 6)], (x + 2, header - 4),
                    cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 1, cv2.LINE_AA)
        for r, tile in enumerate(tiles):
            y = header + r * (h + gap)
            out[y:y + h, x:x + w] = _fit(tile, h, w)
    return out

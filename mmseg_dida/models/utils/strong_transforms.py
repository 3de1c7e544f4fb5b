"""Strong augmentation of the mixed batch in DACS/DAFormer: colour jitter + Gaussian blur.

Follows the DACS code (``dacs_transforms.py``), which used kornia 0.5's ``ColorJitter``
(kornia >= 0.7 calls these formulas ``ColorJiggle``); re-implemented here in plain torch:

* the decisions are drawn once per batch: jitter if U(0,1) > ``color_jitter_probability``
  (so with the default 0.2 jitter is applied 80% of the time), blur if U(0,1) > 0.5;
* per image, in [0, 1] pixel space (denormalised with the data preprocessor's mean/std and
  renormalised afterwards), in a random order: brightness ``x + (b - 1)``, contrast ``x * c``,
  saturation ``S * s`` in HSV, hue ``H + 2 pi h`` with b, c, s ~ U(1 - a, 1 + a),
  h ~ U(-a, a), a = ``color_jitter_strength``; each result clamped to [0, 1];
* blur: sigma ~ U(0.15, 1.15) per image, kernel ~10% of the image side, made odd.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['StrongAugmentation', 'color_jitter', 'gaussian_blur', 'blur_kernel_size',
           'rgb_to_hsv', 'hsv_to_rgb', 'normalisation_of']


def rgb_to_hsv(img: Tensor, eps: float = 1e-8) -> Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> HSV with hue in [0, 2 pi)."""
    r, g, b = img.unbind(-3)
    maxc, argmax = img.max(-3)
    minc = img.min(-3).values
    delta = maxc - minc
    d = torch.where(delta > eps, delta, torch.ones_like(delta))
    h = torch.stack([((g - b) / d) % 6, (b - r) / d + 2, (r - g) / d + 4], -3)
    h = h.gather(-3, argmax.unsqueeze(-3)).squeeze(-3)
    h = torch.where(delta > eps, h, torch.zeros_like(h)) * (math.pi / 3)
    s = torch.where(maxc > eps, delta / maxc.clamp_min(eps), torch.zeros_like(maxc))
    return torch.stack([h % (2 * math.pi), s, maxc], -3)


def hsv_to_rgb(img: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = img.unbind(-3)
    h6 = h / (math.pi / 3)
    k = torch.stack([(5 + h6) % 6, (3 + h6) % 6, (1 + h6) % 6], -3)
    f = torch.minimum(k, 4 - k).clamp(0, 1)
    return v.unsqueeze(-3) - (v * s).unsqueeze(-3) * f


def _host_generator(generator: Optional[torch.Generator]) -> torch.Generator:
    """``generator``, or the process's default CPU generator (what torch draws from
    when given none; named so that the draws are visibly host values: reading them
    never waits for a GPU)."""
    if generator is None:
        return torch.default_generator
    if generator.device.type != 'cpu':
        raise ValueError('strong augmentation: the generator must be a CPU generator '
                         f'(its draws are read on the host), got {generator.device}')
    return generator


def color_jitter(img: Tensor, strength: float,
                 generator: Optional[torch.Generator] = None) -> Tensor:
    """Jitter one image (3, H, W) in [0, 1] (kornia 0.5 ``ColorJitter`` formulas)."""
    a = float(strength)
    generator = _host_generator(generator)

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand((), generator=generator).item()

    b, c, s, h = u(1 - a, 1 + a), u(1 - a, 1 + a), u(1 - a, 1 + a), u(-a, a)
    for op in torch.randperm(4, generator=generator).tolist():
        if op == 0:
            img = (img + (b - 1)).clamp(0, 1)
        elif op == 1:
            img = (img * c).clamp(0, 1)
        else:
            hsv = rgb_to_hsv(img)
            if op == 2:
                hsv = torch.stack([hsv[0], (hsv[1] * s).clamp(0, 1), hsv[2]])
            else:
                hsv = torch.stack([(hsv[0] + 2 * math.pi * h) % (2 * math.pi), hsv[1],
                                   hsv[2]])
            img = hsv_to_rgb(hsv).clamp(0, 1)
    return img


def blur_kernel_size(size: int) -> int:
    """Odd kernel size of about 10% of ``size`` (DACS: floor(ceil(.1 s) - .5 + ceil(.1 s)
    % 2))."""
    k = math.ceil(0.1 * size)
    return int(math.floor(k - 0.5 + k % 2))


def gaussian_blur(img: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (C, H, W) or (N, C, H, W) with reflect padding."""
    squeeze = img.dim() == 3
    x = img.unsqueeze(0) if squeeze else img
    c = x.shape[1]
    for dim, size in ((2, x.shape[2]), (3, x.shape[3])):
        k = blur_kernel_size(size)
        if k < 2:
            continue
        t = torch.arange(k, dtype=x.dtype, device=x.device) - (k - 1) / 2
        w = torch.exp(-t ** 2 / (2 * sigma ** 2))
        w = (w / w.sum()).view(1, 1, -1, 1) if dim == 2 else (w / w.sum()).view(1, 1, 1, -1)
        pad = (0, 0, k // 2, k // 2) if dim == 2 else (k // 2, k // 2, 0, 0)
        x = F.conv2d(F.pad(x, pad, mode='reflect'), w.expand(c, 1, *w.shape[2:]),
                     groups=c)
    return x[0] if squeeze else x


def normalisation_of(preprocessor) -> Tuple[Tensor, Tensor]:
    """(mean, std) with which a data preprocessor normalised the images (3 values
    each, flattened); (0, 1) when it does not normalise."""
    mean = getattr(preprocessor, 'mean', None)
    std = getattr(preprocessor, 'std', None)
    if mean is None or std is None:
        return torch.zeros(3), torch.ones(3)
    return mean.flatten(), std.flatten()


class StrongAugmentation:
    """Colour jitter + Gaussian blur of a normalised image batch (DACS strong transform).

    Args:
        color_jitter_strength (float): a of the jitter ranges. Default 0.2 (DAFormer).
        color_jitter_probability (float): jitter when U(0, 1) > this value. Default 0.2.
        blur (bool): Gaussian blur when U(0, 1) > 0.5. Default True.
    """

    def __init__(self, color_jitter_strength: float = 0.2,
                 color_jitter_probability: float = 0.2, blur: bool = True):
        if not 0 <= color_jitter_strength <= 0.5:
            raise ValueError('StrongAugmentation: color_jitter_strength must be in '
                             f'[0, 0.5], got {color_jitter_strength}')
        if not 0 <= color_jitter_probability <= 1:
            raise ValueError('StrongAugmentation: color_jitter_probability must be in '
                             f'[0, 1], got {color_jitter_probability}')
        self.color_jitter_strength = color_jitter_strength
        self.color_jitter_probability = color_jitter_probability
        self.blur = blur

    def __call__(self, imgs: Tensor, mean: Tensor, std: Tensor,
                 generator: Optional[torch.Generator] = None) -> Tensor:
        """imgs (N, 3, H, W) normalised as ``(x - mean) / std`` with x in [0, 255];
        mean/std of shape (3,) or broadcastable. Returns a new normalised batch."""
        mean = mean.reshape(1, -1, 1, 1).to(imgs)
        std = std.reshape(1, -1, 1, 1).to(imgs)
        generator = _host_generator(generator)
        do_jitter = torch.rand((), generator=generator).item() > \
            self.color_jitter_probability
        do_blur = self.blur and torch.rand((), generator=generator).item() > 0.5
        if not (do_jitter or do_blur):
            return imgs
        out = []
        for img in imgs:
            if do_jitter and img.shape[0] == 3:
                x01 = (img * std[0] + mean[0]) / 255.0
                img = (color_jitter(x01, self.color_jitter_strength, generator) * 255.0
                       - mean[0]) / std[0]
            if do_blur:
                sigma = 0.15 + torch.rand((), generator=generator).item()
                img = gaussian_blur(img, sigma)
            out.append(img)
        return torch.stack(out)

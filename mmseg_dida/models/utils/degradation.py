"""Degradation as a domain bridge: the diffusion forward process and its relatives.

DiDA (NeurIPS 2025, arXiv 2412.10339), Sec. 3: an image x_0 of either domain is degraded
by the forward process of a diffusion model,

    x_t = sqrt(abar_t) * x_0 + sqrt(1 - abar_t) * eps,    eps ~ N(0, I),   (Eq. 1)

with t in {0, ..., T-1}, T = 100 and the sigmoid noise schedule. The states
x_1..x_T form a bridge from each domain towards a shared, fully degraded domain.
The reconstruction target of the noise degradation is eps. Gaussian blur and
masking (inpainting) degradations are also provided; their reconstruction target
is the clean image x_0.

Everything here is a pure tensor function except :class:`Degradation`, a small
registered module that holds the abar_t table and draws t and the noise for a
(source, target) pair from a random generator of its own, so that switching DiDA on
does not change the random stream of the rest of the training step.
"""
import math
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dist import get_rank
from mmseg.registry import MODELS
from torch import Tensor, nn

__all__ = [
    'sigmoid_abar', 'linear_abar', 'cosine_abar', 'abar_from_betas', 'make_abar',
    'forward_diffuse', 'sample_noise', 'upsample_noise', 'blur_sigmas',
    'gaussian_blur', 'mask_degrade', 'Degradation', 'ViewNoise', 'ViewNoiseTransform'
]

SCHEDULES = ('sigmoid', 'linear', 'cosine')
KINDS = ('noise', 'blur', 'mask')


def abar_from_betas(betas: Tensor) -> Tensor:
    """abar_t = prod_{s <= t} (1 - beta_s) (DDPM, Ho et al. 2020, Eq. 4)."""
    return torch.cumprod(1.0 - betas, dim=0)


def _betas_from_abar(abar: Tensor, max_beta: float) -> Tensor:
    prev = torch.cat([abar.new_ones(1), abar[:-1]])
    return (1.0 - abar / prev).clamp(0.0, max_beta)


def sigmoid_abar(num_timesteps: int = 100, start: float = -3.0, end: float = 3.0,
                 tau: float = 1.0, clip_min: float = 1e-9,
                 max_beta: float = 0.999) -> Tensor:
    """Sigmoid schedule (Chen 2023, "On the importance of noise scheduling", Alg. 1).

    gamma(s) = (sigmoid(end/tau) - sigmoid((s (end - start) + start)/tau)) /
               (sigmoid(end/tau) - sigmoid(start/tau)),  s = (t + 1) / T,
    turned into betas (clipped at ``max_beta``) and back into abar_t = prod(1 - beta).
    With the defaults: abar ~ 0.997, 0.851, 0.5, 0.149, ~0 at t = 0, 24, 49, 74, 99.
    Returns a float64 tensor (T,).
    """
    s = torch.arange(1, num_timesteps + 1, dtype=torch.float64) / num_timesteps
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))
    v_s = torch.sigmoid((s * (end - start) + start) / tau)
    gamma = (v_end - v_s) / (v_end - v_start)
    gamma = gamma.clamp(clip_min, 1.0)
    return abar_from_betas(_betas_from_abar(gamma, max_beta))


def linear_abar(num_timesteps: int = 100, beta_start: float = 1e-4,
                beta_end: float = 0.02) -> Tensor:
    """Linear beta schedule of DDPM, rescaled to T steps as in Nichol & Dhariwal 2021
    (betas in [beta_start, beta_end] * 1000 / T). Returns float64 (T,)."""
    scale = 1000.0 / num_timesteps
    betas = torch.linspace(scale * beta_start, scale * beta_end, num_timesteps,
                           dtype=torch.float64)
    return abar_from_betas(betas)


def cosine_abar(num_timesteps: int = 100, s: float = 0.008,
                max_beta: float = 0.999) -> Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021, Eq. 17):
    abar(t) = f(t) / f(0), f(t) = cos(((t / T) + s) / (1 + s) * pi / 2)^2, evaluated at
    t + 1 and turned into betas clipped at ``max_beta``. Returns float64 (T,)."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    abar = f[1:] / f[0]
    return abar_from_betas(_betas_from_abar(abar, max_beta))


def make_abar(schedule: str, num_timesteps: int, **kwargs) -> Tensor:
    """The abar_t table (float64, (T,)) of a named schedule."""
    fns = dict(sigmoid=sigmoid_abar, linear=linear_abar, cosine=cosine_abar)
    if schedule not in fns:
        raise ValueError(f'make_abar: schedule must be one of {SCHEDULES}, '
                         f'got {schedule!r}')
    return fns[schedule](num_timesteps, **kwargs).to(torch.float64)


def forward_diffuse(x0: Tensor, t: Tensor, abar: Tensor, noise: Tensor) -> Tensor:
    """Eq. 1: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, per image.

    Args:
        x0: Clean (mean/std-normalised) images, (N, C, H, W).
        t: Timesteps, (N,) long.
        abar: The schedule's abar table, (T,).
        noise: eps at the images' resolution, (N, C, H, W).
    """
    a = abar.to(device=x0.device, dtype=x0.dtype)[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1.0 - a).sqrt() * noise


def _linear_weight_energy(size_in: int, size_out: int, device=None) -> Tensor:
    """sum_k w_ik^2 for each output i of 1-D linear interpolation (align_corners
    False, as :func:`upsample_noise`) from ``size_in`` to ``size_out`` samples: the
    variance that interpolation gives output i from i.i.d. unit-variance inputs.
    The weights are read off torch's own interpolation of unit impulses, so borders
    (where torch clamps to the edge sample) are exact. Returns float32 (size_out,)."""
    impulses = torch.eye(size_in, device=device, dtype=torch.float32)[None]
    weights = F.interpolate(impulses, size=size_out, mode='linear',
                            align_corners=False)  # (1, size_in, size_out)
    return weights[0].pow(2).sum(0)


def upsample_noise(low: Tensor, size) -> Tensor:
    """Upsample a draw of i.i.d. N(0, 1) noise ``low`` (N, C, h, w) bilinearly to
    ``size`` (H, W) with unit variance at every pixel.

    Bilinear interpolation mixes 2 x 2 draws with weights whose squares sum to less
    than 1 (about 0.39 / 0.43 / 0.44 on average at 2x / 4x / 8x), which would lower
    the noise level of Eq. 1 below sqrt(1 - abar_t). Interpolation is separable, so
    the variance of output pixel (i, j) is exactly v_y(i) v_x(j), the sums of the
    squared 1-D weights (:func:`_linear_weight_energy`); dividing by its square root
    makes every pixel an exact N(0, 1) draw (a linear combination of Gaussians)
    while keeping the smooth blobs of the bilinear field. Nearest upsampling would
    also give unit variance, but as blocks with hard edges on a fixed grid: high
    frequencies at full amplitude, a different degradation from the smooth one.
    """
    h, w = size
    up = F.interpolate(low, size=(h, w), mode='bilinear', align_corners=False)
    var_y = _linear_weight_energy(low.shape[-2], h, low.device)
    var_x = _linear_weight_energy(low.shape[-1], w, low.device)
    return up * (var_y[:, None] * var_x[None, :]).rsqrt().to(up.dtype)


def sample_noise(shape, downsample: int = 1, device=None, dtype=torch.float32,
                 generator: Optional[torch.Generator] = None) -> Tensor:
    """eps of Eq. 1 for images of ``shape`` (N, C, H, W): N(0, 1) at every pixel.

    ``downsample=1`` (the paper): i.i.d. per pixel. ``downsample=d``: drawn at 1/d of
    the image size and upsampled bilinearly with unit per-pixel variance
    (:func:`upsample_noise`): spatially correlated over ~d pixels, but each pixel
    still N(0, 1), so x_t keeps Eq. 1's signal-to-noise ratio. The returned tensor is
    both what is added to the image and the reconstruction target.
    """
    n, c, h, w = shape
    if downsample < 1 or h % downsample or w % downsample:
        raise ValueError(f'sample_noise: downsample={downsample} must be >= 1 and '
                         f'divide the image size {h}x{w}')
    low = torch.randn((n, c, h // downsample, w // downsample), device=device,
                      dtype=dtype, generator=generator)
    if downsample == 1:
        return low
    return upsample_noise(low, (h, w))


def blur_sigmas(num_timesteps: int = 100, rate: float = 0.02) -> Tensor:
    """Blur schedule: step i applies a Gaussian of sigma_i = exp(rate * i);
    applying steps 0..t in sequence equals one Gaussian of
    sigma(t) = sqrt(sum_{i<=t} sigma_i^2)
    (variances add under convolution). Returns float64 (T,), increasing."""
    i = torch.arange(num_timesteps, dtype=torch.float64)
    return torch.cumsum(torch.exp(2 * rate * i), dim=0).sqrt()


def _gauss_kernel1d(sigma: float, device, dtype) -> Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with a per-image sigma (pixels), replicate padding.

    Args:
        x: Images, (N, C, H, W).
        sigma: (N,) standard deviations; sigma <= 0 leaves the image unchanged.
    """
    out = []
    c = x.shape[1]
    for img, s in zip(x, sigma.tolist()):
        img = img.unsqueeze(0)
        if s > 0:
            k = _gauss_kernel1d(s, x.device, x.dtype)
            r = k.numel() // 2
            img = F.pad(img, (r, r, 0, 0), mode='replicate')
            img = F.conv2d(img, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
            img = F.pad(img, (0, 0, r, r), mode='replicate')
            img = F.conv2d(img, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
        out.append(img)
    return torch.cat(out, dim=0)


def mask_degrade(x0: Tensor, keep: Tensor, mask_sigma: float = 4.0,
                 generator: Optional[torch.Generator] = None,
                 fill: float = 0.0) -> Tuple[Tensor, Tensor]:
    """Masking (inpainting) degradation: a blurred-noise field thresholded at its own
    quantile so that the kept fraction of pixels equals ``keep`` per image; masked
    pixels are set to ``fill`` (0 = the dataset mean in normalised space).

    Returns ``(x_t, mask)`` with mask (N, 1, H, W) in {0, 1}, 1 = kept.
    """
    n, _, h, w = x0.shape
    field = torch.randn((n, 1, h, w), device=x0.device, dtype=x0.dtype,
                        generator=generator)
    if mask_sigma > 0:
        field = gaussian_blur(field, torch.full((n,), float(mask_sigma)))
    flat = field.flatten(1)
    ranks = flat.argsort(dim=1).argsort(dim=1)  # 0 = smallest
    num_keep = (keep.to(x0.dtype) * h * w).round().long().view(n, 1)
    mask = (ranks < num_keep).to(x0.dtype).view(n, 1, h, w)
    return x0 * mask + fill * (1.0 - mask), mask


@MODELS.register_module()
class Degradation(nn.Module):
    """The DiDA degradation of a paired (source, target) batch, built from config.

    Args:
        kind: 'noise' (Eq. 1, the paper), 'blur' or 'mask'.
        schedule: Noise schedule for 'noise' and 'mask' (kept fraction = abar_t):
            'sigmoid' (paper), 'linear' or 'cosine'.
        num_timesteps: T (paper: 100).
        noise_downsample: eps is drawn per pixel at full resolution (1, default: the
            paper's Eq. 1, eps ~ N(0, I)) or at 1/``noise_downsample`` resolution and
            upsampled bilinearly (4, as in the authors' earlier code: blobs of ~4
            pixels, as wide as thin objects at small image sizes), rescaled to unit
            variance at every pixel (:func:`upsample_noise`; the earlier code's
            plain bilinear noise had variance ~0.43). Either way the
            reconstruction target is the eps added to the image, at its
            resolution.
        share_t: Source image i and target image i share t (default, as the authors'
            earlier code); otherwise t is drawn independently for every image.
        share_noise: Source image i and target image i share eps (default).
        blur_rate: Blur schedule, sigma_i = exp(blur_rate * i).
        mask_sigma: Smoothness (pixels) of the mask degradation's noise field.
        seed: Seed of the module's own generator (t, eps, masks). None: derived
            from the process's torch seed (``torch.initial_seed()``, which mmengine's
            ``randomness.seed`` sets) and the distributed rank, at the first draw.
    """

    def __init__(self, kind: str = 'noise', schedule: str = 'sigmoid',
                 num_timesteps: int = 100, noise_downsample: int = 1,
                 share_t: bool = True, share_noise: bool = True,
                 blur_rate: float = 0.02, mask_sigma: float = 4.0,
                 seed: Optional[int] = None):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f'Degradation: kind must be one of {KINDS}, got {kind!r}')
        if num_timesteps < 1:
            raise ValueError(f'Degradation: num_timesteps must be >= 1, '
                             f'got {num_timesteps}')
        if noise_downsample not in (1, 2, 4, 8):
            raise ValueError('Degradation: noise_downsample must be 1, 2, 4 or 8, '
                             f'got {noise_downsample}')
        self.kind = kind
        self.schedule = schedule
        self.num_timesteps = num_timesteps
        self.noise_downsample = noise_downsample
        self.share_t = share_t
        self.share_noise = share_noise
        self.mask_sigma = mask_sigma
        self.seed = seed
        self._generator: Optional[torch.Generator] = None
        self.register_buffer('abar', make_abar(schedule, num_timesteps).float(),
                             persistent=False)
        self.register_buffer('sigmas', blur_sigmas(num_timesteps, blur_rate).float(),
                             persistent=False)

    # ------------------------------------------------------------ random state
    def generator(self, device=None) -> torch.Generator:
        """The module's own generator for draws on ``device`` (created, seeded, at
        the first call; a draw on another device type starts a generator there
        from the same seed)."""
        device = torch.device(device if device is not None else 'cpu')
        gen = self._generator
        if gen is None or gen.device.type != device.type:
            seed = self.seed
            if seed is None:
                seed = int(np.random.SeedSequence(
                    [torch.initial_seed() % 2**63, get_rank(), 0xD1DA]
                ).generate_state(1, np.uint64)[0] % 2**63)
            self._generator = gen = torch.Generator(device=device).manual_seed(seed)
        return gen

    def rng_state(self) -> Optional[Tensor]:
        """State of the module's generator (None before the first draw)."""
        return None if self._generator is None else self._generator.get_state()

    def set_rng_state(self, state: Optional[Tensor], device=None) -> None:
        """Restore a state from :meth:`rng_state` (None: start afresh)."""
        if state is None:
            self._generator = None
            return
        self.generator(device).set_state(state)

    @property
    def target_name(self) -> str:
        """What a reconstruction head predicts: 'eps' (noise) or 'x0' (blur, mask)."""
        return 'eps' if self.kind == 'noise' else 'x0'

    def sample_t(self, n: int, device=None,
                 generator: Optional[torch.Generator] = None) -> Tensor:
        """t ~ U{0, ..., T-1}, (n,) long."""
        return torch.randint(0, self.num_timesteps, (n,), device=device,
                             generator=generator or self.generator(device))

    def forward(self, x0: Tensor, t: Tensor, noise: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        """Degrade ``x0`` (N, C, H, W) at timesteps ``t`` (N,).

        Returns ``(x_t, target)``: for 'noise' the target is the eps of Eq. 1 that
        was added, at the image's resolution (so that a crop of x_t, e.g. HRDA's
        detail crop, has its eps in the same box of the target); for 'blur'/'mask'
        it is x0.
        ``noise`` may pass a pre-drawn eps (for sharing across domains or a fixed
        draw): at the image's size it is used as is; smaller, it is a draw of i.i.d.
        N(0, 1) at a lower resolution, upsampled by :func:`upsample_noise`.
        Random draws use ``generator``, or the module's own one when None.
        """
        generator = generator or self.generator(x0.device)
        if self.kind == 'noise':
            if noise is None:
                noise = sample_noise(x0.shape, self.noise_downsample, x0.device,
                                     x0.dtype, generator)
            elif noise.shape[-2:] != x0.shape[-2:]:
                noise = upsample_noise(noise, x0.shape[-2:])
            return forward_diffuse(x0, t, self.abar, noise), noise
        if self.kind == 'blur':
            return gaussian_blur(x0, self.sigmas[t]), x0
        x_t, _ = mask_degrade(x0, self.abar[t], self.mask_sigma, generator)
        return x_t, x0

    def sample_pair_t(self, n: int, device=None,
                      generator: Optional[torch.Generator] = None) -> Tensor:
        """t of a paired batch [source (n); target (n)], (2n,): shared by source
        image i and target image i with ``share_t``."""
        generator = generator or self.generator(device)
        t = self.sample_t(n if self.share_t else 2 * n, device, generator)
        return torch.cat([t, t]) if self.share_t else t

    def views(self, t: Tensor, pairs: Optional[int] = None) -> 'ViewNoise':
        """Eq. 1 per view of a multi-resolution student (:class:`ViewNoise`) at
        timesteps ``t`` of the whole batch; ``pairs``: the batch is [source (pairs);
        target (pairs)] and, with ``share_noise``, image i and image pairs + i share
        eps in every view."""
        if self.kind != 'noise':
            raise ValueError(f"Degradation.views: per-view noise needs kind='noise', "
                             f'got {self.kind!r}')
        return ViewNoise(self, t, pairs if self.share_noise else None)

    def degrade_pair(self, src: Tensor, tgt: Tensor,
                     generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
        """Degrade a source batch and a target batch of equal batch size together.

        Returns a dict with ``x_t`` (2N, C, H, W; source first), ``target`` (the
        reconstruction target, same order and size: for 'noise' the eps added) and
        ``t`` (2N,).
        """
        n = src.shape[0]
        generator = generator or self.generator(src.device)
        if tgt.shape[0] != n:
            raise ValueError('Degradation.degrade_pair: source and target batch sizes '
                             f'differ ({n} vs {tgt.shape[0]})')
        t = self.sample_pair_t(n, src.device, generator)
        x0 = torch.cat([src, tgt]) if src.shape == tgt.shape else None
        if x0 is None:
            raise ValueError('Degradation.degrade_pair: source and target images must '
                             f'have the same shape, got {tuple(src.shape)} and '
                             f'{tuple(tgt.shape)}')
        noise = None
        if self.kind == 'noise':
            shape = (n if self.share_noise else 2 * n, ) + tuple(src.shape[1:])
            noise = sample_noise(shape, self.noise_downsample, src.device, src.dtype,
                                 generator)
            if self.share_noise:
                noise = torch.cat([noise, noise])
        x_t, target = self(x0, t, noise=noise, generator=generator)
        return dict(x_t=x_t, target=target, t=t)


class ViewNoise:
    """Eq. 1 applied to each view of a student at the view's own resolution.

    A multi-resolution student (HRDA) sees an image twice: downscaled (the LR
    context) and at full resolution (the detail crop). Degrading the full image and
    then downscaling it averages the per-pixel noise: at HRDA's 0.5 the context keeps
    about a quarter of its variance, i.e. a smaller effective t than the detail crop
    at the same t. Here each view is degraded after it is cut and scaled,
    x_v,t = sqrt(abar_t) x_v + sqrt(1 - abar_t) eps_v, with eps_v drawn at the view's
    resolution (the module's ``noise_downsample`` applies per view), the same t for
    every view of an image: both views then have Eq. 1's signal-to-noise ratio.

    Use: ``transform = views.for_images(index)`` is the student's ``view_transform``
    (``uda_forward(x0, view_transform=transform)``) for the images ``index`` of the
    batch; after the forward ``transform.noise[view]`` is the eps added to that
    view (``'input'``: the view at the input's resolution, what h' reads: L_R's
    target). The eps of a view is drawn once for the whole batch, at its first use,
    so one batched forward and two per-domain forwards add the same noise.
    """

    def __init__(self, degradation: Degradation, t: Tensor,
                 pairs: Optional[int] = None):
        self.degradation = degradation
        self.t = t
        self.pairs = pairs
        self._noise: Dict[str, Tensor] = {}

    def batch_noise(self, view: str, x: Tensor, index: slice) -> Tensor:
        """eps of ``view`` for the whole batch, drawn at ``x``'s resolution."""
        if view not in self._noise:
            total = self.t.shape[0]
            n = self.pairs if self.pairs is not None else total
            eps = sample_noise((n, ) + tuple(x.shape[1:]),
                               self.degradation.noise_downsample, x.device, x.dtype,
                               self.degradation.generator(x.device))
            if self.pairs is not None:
                eps = torch.cat([eps, eps])
            self._noise[view] = eps
        eps = self._noise[view]
        if eps.shape[-3:] != x.shape[-3:]:
            raise ValueError(f'ViewNoise: view {view!r} is {tuple(x.shape[-3:])} here '
                             f'but {tuple(eps.shape[-3:])} in another forward of the step')
        return eps

    def for_images(self, index: slice) -> 'ViewNoiseTransform':
        return ViewNoiseTransform(self, index)


class ViewNoiseTransform:
    """The ``view_transform`` of one forward (see :class:`ViewNoise`)."""

    def __init__(self, views: ViewNoise, index: slice):
        self.views = views
        self.index = index
        self.noise: Dict[str, Tensor] = {}

    def __call__(self, x: Tensor, view: str) -> Tensor:
        t = self.views.t[self.index]
        # x may be several windows of the same images (window-major), as HRDA's
        # inference; a training forward has one view per image.
        if x.shape[0] % t.shape[0]:
            raise ValueError(f'ViewNoiseTransform: {x.shape[0]} images in view {view!r} for '
                             f'{t.shape[0]} timesteps')
        reps = x.shape[0] // t.shape[0]
        eps = self.views.batch_noise(view, x, self.index)[self.index]
        eps, t = eps.repeat(reps, 1, 1, 1), t.repeat(reps)
        self.noise[view] = eps
        return forward_diffuse(x, t, self.views.degradation.abar, eps)

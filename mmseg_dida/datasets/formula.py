"""A formula-driven, labelled image set for pretraining without natural images.

Categories are iterated function systems (IFS), as in FractalDB (Kataoka et al., ACCV
2020; Nakashima et al., AAAI 2022): a category is a set of ``N`` affine maps
``w_j(p) = A_j p + b_j`` (``N`` in [2, 7], the six entries of ``A_j`` and ``b_j``
uniform in [-1, 1]), picked with probabilities ``p_j`` proportional to ``|det A_j|``; its
attractor is drawn by the chaos game. A candidate system is kept only when its points
stay finite and fill at least ``min_fill`` of an image of FractalDB's point density
(FractalDB: filling rate 0.2, 100k points on 512x512; here the same points per pixel).
Instances of a category (FractalDB's "instance augmentation") scale one of the six
parameters of every map by 0.8, 0.9, 1.1 or 1.2 (25 variants with the original), and
are flipped and rotated by multiples of 90 degrees when placed.

Images are composed for dense pretraining, as SegRCDB (Shinoda et al., ICCV 2023) does
for segmentation: 1 to ``max_instances`` instances of random categories at random sizes
and positions, each coloured by two random colours blended by its point density, over a
background of a random colour gradient; later instances occlude earlier ones. The label
of a pixel is its instance's category + 1, or 0 for the background.

Nothing here shares anything with the procedural street benchmark
(:mod:`mmseg_dida.datasets.procedural`): no layouts, palettes, textures, blur or haze.
Every image is a pure function of ``(seed, stream, index)``, so a training run can
resume exactly without saving a data position, and the held-out images (stream 1) are
never drawn for training (stream 0).
"""
from dataclasses import dataclass
from typing import List, Tuple

import cv2
import numpy as np

__all__ = ['FormulaSet', 'sample_ifs', 'chaos_game', 'fill_rate', 'instance_variants']

#: FractalDB's instance augmentation: one parameter of every map times one factor
VARIANT_FACTORS = (0.8, 0.9, 1.1, 1.2)
#: FractalDB's point density: 100k points on a 512x512 image
POINTS_PER_PIXEL = 100_000 / 512 ** 2
TRAIN_STREAM, HELDOUT_STREAM, CATEGORY_STREAM = 0, 1, 2


def sample_ifs(rng: np.random.Generator) -> np.ndarray:
    """One random IFS: an (N, 7) array of maps ``a, b, c, d, e, f, p`` with
    ``A = [[a, b], [c, d]]``, ``b = (e, f)`` and ``p`` proportional to ``|ad - bc|``."""
    n = int(rng.integers(2, 8))
    maps = np.zeros((n, 7))
    maps[:, :6] = rng.uniform(-1.0, 1.0, size=(n, 6))
    det = np.abs(maps[:, 0] * maps[:, 3] - maps[:, 1] * maps[:, 2])
    if det.sum() <= 0:
        det = np.ones(n)
    maps[:, 6] = det / det.sum()
    return maps


def chaos_game(maps: np.ndarray, num_points: int, rng: np.random.Generator,
               chains: int = 256, burn_in: int = 20) -> np.ndarray:
    """``num_points`` (x, y) points of the attractor of ``maps``, from ``chains``
    chaos-game chains run side by side (the first ``burn_in`` steps of each dropped).
    Points of a system that diverges are inf or nan."""
    steps = burn_in + -(-num_points // chains)
    p = rng.uniform(-0.5, 0.5, size=(chains, 2))
    choice = rng.choice(len(maps), size=(steps, chains), p=maps[:, 6])
    out = np.empty((steps - burn_in, chains, 2))
    a, b, c, d, e, f = (maps[:, i] for i in range(6))
    with np.errstate(over='ignore', invalid='ignore'):
        for s in range(steps):
            j = choice[s]
            x, y = p[:, 0], p[:, 1]
            p = np.stack([a[j] * x + b[j] * y + e[j], c[j] * x + d[j] * y + f[j]], 1)
            if s >= burn_in:
                out[s - burn_in] = p
    return out.reshape(-1, 2)[:num_points]


def _to_pixels(points: np.ndarray, size: int, pad: int) -> np.ndarray:
    """Integer pixel coordinates of ``points`` scaled into ``[pad, size - pad)``."""
    lo, hi = points.min(0), points.max(0)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    return ((points - lo) / span * (size - 1 - 2 * pad) + pad).astype(np.int64)


def fill_rate(points: np.ndarray, size: int = 256) -> float:
    """FractalDB's filling rate: the fraction of a ``size`` x ``size`` image's pixels
    hit by ``points`` (0 when a point is not finite)."""
    if not np.isfinite(points).all():
        return 0.0
    px = _to_pixels(points, size, pad=size // 85)
    hit = np.zeros((size, size), dtype=bool)
    hit[px[:, 1], px[:, 0]] = True
    return float(hit.mean())


def instance_variants(maps: np.ndarray) -> List[np.ndarray]:
    """FractalDB's 25 instances of a category: the system itself, then each of the
    six parameters of every map scaled by each factor of :data:`VARIANT_FACTORS`."""
    out = [maps]
    for k in range(6):
        for factor in VARIANT_FACTORS:
            v = maps.copy()
            v[:, k] *= factor
            out.append(v)
    return out


def render_density(points: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32 in [0, 1]: the log point density of ``points``, 0 where no
    point falls."""
    px = _to_pixels(points, size, pad=1)
    count = np.zeros((size, size), dtype=np.float64)
    np.add.at(count, (px[:, 1], px[:, 0]), 1.0)
    dens = np.log1p(count)
    return (dens / max(dens.max(), 1e-12)).astype(np.float32)


@dataclass
class FormulaSet:
    """The categories, their rendered instances and the composed images.

    Args:
        num_categories: IFS categories (labels 1..num_categories; 0 = background).
        seed: Everything (categories, instances, images) is a function of it.
        image_size: Side of the square images.
        bank_size: Side of the rendered instances (resized when placed).
        max_instances: Instances per image are 1..max_instances.
        min_fill: FractalDB's filling-rate threshold for a category.
        points: Chaos-game points per rendered instance.
    """
    num_categories: int = 64
    seed: int = 0
    image_size: int = 96
    bank_size: int = 96
    max_instances: int = 4
    min_fill: float = 0.2
    points: int = 20_000

    def __post_init__(self):
        if self.num_categories < 1:
            raise ValueError(f'FormulaSet: num_categories must be >= 1, got '
                             f'{self.num_categories}')
        if self.image_size < 16:
            raise ValueError(f'FormulaSet: image_size must be >= 16, got '
                             f'{self.image_size}')
        self.categories, self.bank = self._build()

    @property
    def num_classes(self) -> int:
        """Label values: the categories and the background."""
        return self.num_categories + 1

    def _build(self) -> Tuple[List[np.ndarray], List[np.ndarray]]:
        """Search ``num_categories`` systems that pass the filling-rate filter and
        render each one's valid variants (a variant whose points diverge is left out;
        the system itself always passes)."""
        rng = np.random.default_rng((self.seed, CATEGORY_STREAM))
        # the filter's image has FractalDB's points per pixel for our point count
        filter_size = int(round((self.points / POINTS_PER_PIXEL) ** 0.5))
        categories, bank = [], []
        tries = 0
        while len(categories) < self.num_categories:
            tries += 1
            if tries > 1000 * self.num_categories:
                raise RuntimeError('FormulaSet: the filling-rate filter rejects nearly '
                                   f'every system (min_fill={self.min_fill})')
            maps = sample_ifs(rng)
            pts = chaos_game(maps, self.points, rng)
            if fill_rate(pts, filter_size) < self.min_fill:
                continue
            renders = []
            for variant in instance_variants(maps):
                vp = chaos_game(variant, self.points, rng)
                if np.isfinite(vp).all() and np.abs(vp).max() < 1e6:
                    renders.append(render_density(vp, self.bank_size))
            categories.append(maps)
            bank.append(np.stack(renders))
        return categories, bank

    def sample(self, stream: int, index: int, *extra: int) -> Tuple[np.ndarray,
                                                                    np.ndarray]:
        """Image ``index`` of ``stream`` (:data:`TRAIN_STREAM` with the step as an
        extra key, or :data:`HELDOUT_STREAM`): (H, W, 3) uint8 RGB and (H, W) uint8
        labels."""
        rng = np.random.default_rng((self.seed, stream, index, *extra))
        s = self.image_size
        # background: a linear gradient between two random colours
        c0, c1 = rng.uniform(0, 255, size=(2, 3))
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:s, 0:s] / (s - 1)
        ramp = (np.cos(angle) * xx + np.sin(angle) * yy)
        ramp = (ramp - ramp.min()) / max(ramp.max() - ramp.min(), 1e-12)
        img = c0 + (c1 - c0) * ramp[..., None]
        label = np.zeros((s, s), dtype=np.uint8)
        for _ in range(int(rng.integers(1, self.max_instances + 1))):
            cat = int(rng.integers(self.num_categories))
            renders = self.bank[cat]
            dens = renders[int(rng.integers(len(renders)))]
            dens = np.rot90(dens, int(rng.integers(4)))
            if rng.random() < 0.5:
                dens = dens[:, ::-1]
            side = int(rng.integers(s // 4, s + 1))
            dens = cv2.resize(np.ascontiguousarray(dens), (side, side),
                              interpolation=cv2.INTER_LINEAR)
            mask = dens > 0.05
            y0, x0 = (int(v) for v in rng.integers(-side // 4, s - side // 2, size=2))
            ys, xs = slice(max(y0, 0), min(y0 + side, s)), slice(max(x0, 0),
                                                                 min(x0 + side, s))
            sub = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0,
                                                              xs.stop - x0))
            m, d = mask[sub], dens[sub]
            f0, f1 = rng.uniform(0, 255, size=(2, 3))
            colour = f0 + (f1 - f0) * d[..., None]
            region = img[ys, xs]
            region[m] = colour[m]
            label[ys, xs][m] = cat + 1
        return np.clip(img, 0, 255).astype(np.uint8), label

    def batch(self, stream: int, indices, *extra: int) -> Tuple[np.ndarray, np.ndarray]:
        """(B, H, W, 3) images and (B, H, W) labels of :meth:`sample`."""
        pairs = [self.sample(stream, i, *extra) for i in indices]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

"""A procedural, seed-deterministic source->target street-scene benchmark.

GTA->Cityscapes at toy scale: both domains draw their scene *geometry* from one layout
sampler (horizon, buildings, trees, road and sidewalk in perspective, poles with signs,
cars on the road, people on the sidewalk), so class identity is carried by shape and
layout. They differ in *appearance* only:

* ``source`` ("game"): saturated, clean colours, sharp procedural textures
  (lane marks, paving grids, window grids), no camera effects.
* ``target`` ("camera"): another palette and other textures (muted colours, brick and
  bark noise, overcast sky), then camera blur, haze growing towards the horizon,
  a gamma/white-balance shift and sensor noise.

That target differs in every way at once. A *gap preset* (:data:`GAPS`, the ``gap``
argument of :func:`make_sample` and :func:`generate_benchmark`) keeps one kind of
difference and renders the rest of the target like the source:

* ``full`` (default): all of the above; the same image and label files, pixel for
  pixel, as before presets existed.
* ``texture``: the target's high-frequency textures only (value-noise brick, bark,
  asphalt, grass); source palette, clean camera.
* ``palette``: the target's colours and tone only (muted palette and its instance
  colours, gamma and white-balance shift); source textures, clean camera.
* ``camera``: the target camera's optics only (blur, haze towards the horizon, sensor
  noise); source palette and textures.
* ``fog``: fog by the atmospheric scattering model over a depth read from the layout
  (:func:`_fog`); source palette, textures and a clean camera otherwise.

Labels and source images depend only on (seed, domain, split, index, size): they are
identical across presets, only ``target/leftImg8bit`` changes.

Labels are Cityscapes trainIds (the 10 classes of :data:`USED_TRAIN_IDS`; the other nine
never occur) and the files are written in the Cityscapes folder layout, one root per
domain, so mmseg's ``CityscapesDataset`` reads them like real data::

    <root>/<domain>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
    <root>/<domain>/gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

ROAD, SIDEWALK, BUILDING, POLE, SIGN = 0, 1, 2, 5, 7
VEGETATION, TERRAIN, SKY, PERSON, CAR = 8, 9, 10, 11, 13
USED_TRAIN_IDS = (ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY,
                  PERSON, CAR)
DOMAINS = ('source', 'target')
CITY = {'source': 'gamecity', 'target': 'cameracity'}
DEFAULT_COUNTS = {'train': 500, 'val': 100}
FORMAT_VERSION = 1

# Base colours (RGB) per domain and class; per-image jitter is added on top. The target
# palette is the source one muted towards a warm grey (TARGET_MUTE): related enough that a
# source model is partly right on the target, different enough to cost it much accuracy.
TARGET_MUTE = 0.4
TARGET_GREY = (140, 135, 130)
_PALETTE = {
    'source': {
        ROAD: (70, 70, 80), SIDEWALK: (230, 120, 200), BUILDING: (200, 90, 40),
        POLE: (250, 250, 60), SIGN: (255, 30, 30), VEGETATION: (40, 220, 40),
        TERRAIN: (170, 230, 90), SKY: (40, 140, 255), PERSON: (255, 0, 160),
        CAR: (0, 60, 255),
    },
}
_PALETTE['target'] = {
    c: tuple((1 - TARGET_MUTE) * v + TARGET_MUTE * g for v, g in zip(rgb, TARGET_GREY))
    for c, rgb in _PALETTE['source'].items()
}


@dataclass(frozen=True)
class Appearance:
    """Which appearance factors of each kind an image is rendered with.

    Args:
        palette: 'source' or 'target' base colours per class, their per-image jitter
            and the colours of cars and people.
        texture: 'source' (sharp, regular) or 'target' (value noise) per-class shading.
        tone: the target camera's gamma and white-balance shift.
        optics: the target camera's blur, haze towards the horizon and sensor noise.
        fog: depth-dependent fog (:func:`_fog`).
    """
    palette: str = 'source'
    texture: str = 'source'
    tone: bool = False
    optics: bool = False
    fog: bool = False

    def __post_init__(self):
        for name in ('palette', 'texture'):
            if getattr(self, name) not in DOMAINS:
                raise ValueError(f'Appearance: {name} must be one of {DOMAINS}, got '
                                 f'{getattr(self, name)!r}')


SOURCE_LOOK = Appearance()
#: gap preset -> how the target is rendered (the source always as SOURCE_LOOK)
GAPS: Dict[str, Appearance] = {
    'full': Appearance(palette='target', texture='target', tone=True, optics=True),
    'texture': Appearance(texture='target'),
    'palette': Appearance(palette='target', tone=True),
    'camera': Appearance(optics=True),
    'fog': Appearance(fog=True),
}
GAP_DESCRIPTIONS = {
    'full': 'muted palette, noisy textures, camera blur, haze, colour cast and sensor '
            'noise (everything at once)',
    'texture': 'other high-frequency textures only; source palette, clean camera',
    'palette': 'muted colours, gamma and white-balance shift only; source textures, '
               'clean camera',
    'camera': 'camera blur, haze towards the horizon and sensor noise only; source '
              'palette and textures',
    'fog': 'fog whose density grows with depth (scattering model, patchy); source '
           'palette, textures and a clean camera otherwise',
}
DEFAULT_GAP = 'full'
# Fog: transmission exp(-beta * depth), depth 1 at the bottom row, FOG_MAX_DEPTH for
# anything at the horizon, infinite for the sky; beta drawn per image from FOG_DENSITY.
FOG_MAX_DEPTH = 10.0
FOG_DENSITY = (0.1, 0.2)


def default_root(gap: str = DEFAULT_GAP) -> str:
    """Where the tools put a preset's benchmark: ``data/procedural`` (the configs'
    data root) for the default, ``data/procedural_<gap>`` for the others."""
    appearance('target', gap)
    root = osp.join('data', 'procedural')
    return root if gap == DEFAULT_GAP else f'{root}_{gap}'


def appearance(domain: str, gap: str = DEFAULT_GAP) -> Appearance:
    """How ``domain`` is rendered under the gap preset ``gap`` (validated)."""
    if gap not in GAPS:
        raise ValueError(f'unknown gap preset {gap!r}; valid presets: '
                         f"{', '.join(GAPS)}")
    if domain not in DOMAINS:
        raise ValueError(f'domain must be one of {DOMAINS}, got {domain!r}')
    return SOURCE_LOOK if domain == 'source' else GAPS[gap]


def sample_layout(rng: np.random.Generator, height: int,
                  width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one street scene's geometry.

    Returns:
        (label, instances): (H, W) uint8 trainIds and (H, W) int32 instance ids
        (0 = none) of the cars and people, whose colours vary per instance.
    """
    H, W = height, width
    label = np.full((H, W), SKY, np.uint8)
    inst = np.zeros((H, W), np.int32)
    horizon = int(H * rng.uniform(0.38, 0.5))

    # Buildings: a row of blocks of varying width and height, gaps show the sky.
    x = int(rng.integers(-W // 10, W // 20))
    while x < W:
        bw = int(rng.integers(W // 10, W // 4))
        if rng.random() > 0.15:
            top = int(rng.integers(int(0.04 * H), max(horizon - H // 8, int(0.05 * H) + 1)))
            label[top:horizon + 1, max(x, 0):x + bw] = BUILDING
        x += bw

    # Ground: terrain, then a wider sidewalk trapezoid, then the road trapezoid.
    label[horizon:] = TERRAIN
    vx = W / 2 + rng.normal(0, W / 12)
    road_l, road_r = rng.uniform(-0.25 * W, 0.2 * W), rng.uniform(0.8 * W, 1.25 * W)
    walk_l = road_l - rng.uniform(0.2, 0.6) * W
    walk_r = road_r + rng.uniform(0.2, 0.6) * W
    walk = np.array([[vx - 6, horizon], [vx + 6, horizon], [walk_r, H], [walk_l, H]])
    road = np.array([[vx - 2, horizon], [vx + 2, horizon], [road_r, H], [road_l, H]])
    cv2.fillPoly(label, [np.round(walk).astype(np.int32)], SIDEWALK)
    cv2.fillPoly(label, [np.round(road).astype(np.int32)], ROAD)

    # Tree crowns in front of the buildings, near the horizon.
    for _ in range(int(rng.integers(1, 5))):
        cx = int(rng.integers(0, W))
        cy = int(horizon - rng.uniform(0.05, 0.25) * H)
        ax, ay = int(rng.uniform(0.04, 0.12) * W), int(rng.uniform(0.06, 0.15) * H)
        cv2.ellipse(label, (cx, cy), (ax, ay), 0, 0, 360, VEGETATION, -1)
        cv2.line(label, (cx, cy), (cx, horizon + 2), VEGETATION, max(1, ax // 6))

    def edge_x(y, left):  # x of the road edge at row y
        f = (y - horizon) / max(H - horizon, 1)
        return vx + f * ((road_l if left else road_r) - vx)

    # Objects in depth order (far first) so near ones occlude far ones.
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        objects.append(('pole', int(rng.integers(horizon + 4, H))))
    for _ in range(int(rng.integers(1, 5))):
        objects.append(('car', int(rng.integers(horizon + 6, H + H // 8))))
    for _ in range(int(rng.integers(0, 5))):
        objects.append(('person', int(rng.integers(horizon + 4, H + H // 10))))
    objects.sort(key=lambda o: o[1])
    next_id = 1
    for kind, yb in objects:
        depth = (yb - horizon) / max(H - horizon, 1)  # 0 at horizon, 1 at bottom
        left = bool(rng.random() < 0.5)
        if kind == 'pole':
            side = edge_x(yb, left) + (-1 if left else 1) * rng.uniform(0.02, 0.1) * W * depth
            h = int((0.25 + 0.6 * depth) * H)
            w = max(1, int(round(1 + 3 * depth)))
            x0 = int(side)
            label[max(yb - h, 0):yb, max(x0, 0):max(x0 + w, 0)] = POLE
            if rng.random() < 0.7:
                s = max(3, int((0.03 + 0.08 * depth) * H))
                cy = max(yb - h + s // 2, 0)
                if rng.random() < 0.5:
                    cv2.circle(label, (x0 + w // 2, cy), s // 2 + 1, SIGN, -1)
                else:
                    label[max(cy - s // 2, 0):cy + s // 2 + 1,
                          max(x0 - s // 2, 0):max(x0 + w + s // 2, 0)] = SIGN
        elif kind == 'car':
            h = int((0.06 + 0.3 * depth) * H)
            w = int(h * rng.uniform(1.6, 2.2))
            lo, hi = edge_x(yb, True), edge_x(yb, False)
            if hi - lo < w:
                continue
            x0 = int(rng.uniform(lo, hi - w))
            body = np.array([[x0, yb], [x0 + w, yb], [x0 + w, yb - 0.55 * h],
                             [x0 + 0.78 * w, yb - h], [x0 + 0.22 * w, yb - h],
                             [x0, yb - 0.55 * h]])
            poly = [np.round(body).astype(np.int32)]
            cv2.fillPoly(label, poly, CAR)
            cv2.fillPoly(inst, poly, next_id)
            next_id += 1
        else:  # person on the sidewalk, beside the road
            h = int((0.12 + 0.45 * depth) * H)
            w = max(2, int(h * 0.3))
            x0 = int(edge_x(yb, left) + (-1 if left else 1) * rng.uniform(0.02, 0.15) * W
                     * max(depth, 0.2))
            m = np.zeros((H, W), np.uint8)
            cv2.ellipse(m, (x0, yb - int(0.45 * h)), (w // 2, int(0.4 * h)), 0, 0, 360, 1,
                        -1)
            cv2.circle(m, (x0, yb - int(0.88 * h)), max(1, int(0.12 * h)), 1, -1)
            label[m > 0] = PERSON
            inst[m > 0] = next_id
            next_id += 1
    # Instances overwritten by a nearer object of another class keep no id there.
    inst[(label != CAR) & (label != PERSON)] = 0
    return label, inst


def _value_noise(rng, height, width, cell):
    """Smooth random field in [0, 1] (bilinearly upsampled coarse noise)."""
    gh, gw = height // cell + 2, width // cell + 2
    coarse = rng.random((gh, gw)).astype(np.float32)
    return cv2.resize(coarse, (gw * cell, gh * cell),
                      interpolation=cv2.INTER_LINEAR)[:height, :width]


def _class_texture(cls, texture, rng, yy, xx, base):
    """(H, W) multiplicative shading pattern of one class in one texture style."""
    H, W = yy.shape
    if texture == 'source':  # sharp, regular, game-like
        if cls == ROAD:
            return 1.0 + 1.8 * ((np.abs(xx - W / 2) < 1.5) & ((yy // 6) % 2 == 0))
        if cls == SIDEWALK:
            return 1.0 - 0.35 * (((yy % 8) == 0) | ((xx % 8) == 0))
        if cls == BUILDING:
            return 1.0 - 0.55 * (((yy % 10) > 4) & ((xx % 9) > 4))
        if cls == VEGETATION:
            return 0.75 + 0.5 * (((xx // 3 + yy // 3) % 2) == 0)
        if cls == SKY:
            return 0.75 + 0.35 * (yy / H)
        return np.ones((H, W), np.float32)
    # target: irregular, noisy, camera-like
    if cls == ROAD:
        return 0.85 + 0.3 * _value_noise(rng, H, W, 2)
    if cls == SIDEWALK:
        return 0.8 + 0.25 * _value_noise(rng, H, W, 4) - 0.2 * ((xx % 16) < 1)
    if cls == BUILDING:
        return 0.7 + 0.25 * _value_noise(rng, H, W, 3) - 0.3 * ((xx % 14) < 3)
    if cls == VEGETATION:
        return 0.6 + 0.7 * _value_noise(rng, H, W, 2)
    if cls == SKY:
        return 1.0 - 0.15 * (1 - yy / H) * _value_noise(rng, H, W, 16)
    if cls == TERRAIN:
        return 0.7 + 0.5 * _value_noise(rng, H, W, 3)
    return 0.9 + 0.2 * _value_noise(rng, H, W, 4)


def render(label: np.ndarray, instances: np.ndarray, rng: np.random.Generator,
           look: Appearance) -> np.ndarray:
    """Render an RGB uint8 image of a layout in the appearance ``look``."""
    H, W = label.shape
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.zeros((H, W, 3), np.float32)
    palette = _PALETTE[look.palette]
    jitter = 18 if look.palette == 'source' else 12
    for cls in np.unique(label):
        base = np.array(palette[int(cls)], np.float32)
        base = base + rng.normal(0, jitter, 3)
        shade = _class_texture(int(cls), look.texture, rng, yy, xx, base)
        mask = label == cls
        img[mask] = base[None] * shade[mask][:, None]
    for i in np.unique(instances[instances > 0]):  # per-instance colours
        mask = instances == i
        cls = int(label[mask][0])
        if look.palette == 'source':
            colour = rng.uniform(0, 255, 3) * 0.5 + np.array(palette[cls]) * 0.5
        else:
            colour = np.array(palette[cls]) * rng.uniform(0.6, 1.4)
        img[mask] = colour
        ys = np.nonzero(mask)[0]  # darker lower part: wheels / legs
        cut = ys.min() + 0.75 * (ys.max() - ys.min())
        img[mask & (yy > cut)] *= 0.35
    if look.fog:
        img = _fog(img, rng, label, instances)
    if look.tone or look.optics:
        img = _camera(img, rng, label, tone=look.tone, optics=look.optics)
    return np.clip(img, 0, 255).astype(np.uint8)


def _camera(img, rng, label, tone=True, optics=True):
    """Target camera model: blur, haze towards the horizon (optics), colour cast
    (tone), sensor noise (optics)."""
    H, W = label.shape
    if optics:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.2))
        rows = np.nonzero((label != SKY).any(1))[0]
        horizon = rows.min() if rows.size else H // 2
        dist = 1.0 - np.abs(np.arange(H, dtype=np.float32) - horizon) / H
        haze = rng.uniform(0.25, 0.45) * dist[:, None, None] ** 2
        img = img * (1 - haze) + haze * np.array([200, 205, 210], np.float32)
    if tone:
        gamma = rng.uniform(0.8, 1.1)
        img = 255.0 * (img / 255.0).clip(0, 1) ** gamma
        img = img * rng.uniform(0.9, 1.1, 3)[None, None]
    if optics:
        img = img + rng.normal(0, rng.uniform(3, 8), img.shape)
    return img


def layout_depth(label: np.ndarray, instances: np.ndarray,
                 max_depth: float = FOG_MAX_DEPTH) -> np.ndarray:
    """A depth map of a layout, 1 at the bottom row of the image.

    The ground (road, sidewalk, terrain) is a plane seen in perspective: a row y below
    the horizon is at depth (H - horizon) / (y - horizon). Anything standing on it takes
    the depth of the row just below its lowest visible pixel in that column: the ground
    it stands on, or the nearer object that hides its foot (it is at least that far);
    1 when it reaches the bottom edge. A pole and its sign, and each car and person, are
    one object. Depths are capped at ``max_depth`` (buildings and trees at the horizon
    are that far); the sky is at infinity.
    """
    H = label.shape[0]
    ground = np.isin(label, (ROAD, SIDEWALK, TERRAIN))
    rows = np.nonzero(ground.any(1))[0]
    horizon = rows.min() if rows.size else H // 2
    y = np.arange(H, dtype=np.float32)
    row_depth = np.minimum((H - horizon) / np.maximum(y - horizon, 1.0), max_depth)
    obj = np.where(instances > 0, 1000 + instances,
                   np.where(label == SIGN, POLE, label).astype(np.int32))
    contact = np.empty(label.shape, np.int64)  # row whose depth each pixel takes
    contact[H - 1] = np.where(ground[H - 1], H - 1, H)
    for r in range(H - 2, -1, -1):
        same = obj[r] == obj[r + 1]
        contact[r] = np.where(ground[r], r, np.where(same, contact[r + 1], r + 1))
    depth = row_depth[np.minimum(contact, H - 1)]
    depth[label == SKY] = np.inf
    return depth


def _fog(img, rng, label, instances):
    """Fog by the atmospheric scattering model (Koschmieder's law, as in Foggy
    Cityscapes): ``I = J t + A (1 - t)``, ``t = exp(-beta d)`` with the depth d of
    :func:`layout_depth`, a density beta drawn per image from FOG_DENSITY and varied
    by up to +-40% across it at a low frequency (patchy fog), and a light grey
    airlight A. The sky becomes the airlight; far buildings keep a trace of contrast."""
    H, W = label.shape
    beta = rng.uniform(*FOG_DENSITY) * (0.6 + 0.8 * _value_noise(rng, H, W, max(H // 4, 1)))
    t = np.exp(-beta * layout_depth(label, instances))[..., None]
    airlight = rng.uniform(190, 230) + rng.normal(0, 4, 3).astype(np.float32)
    return img * t + airlight * (1 - t)


def sample_paths(root: str, domain: str, split: str, index: int) -> Tuple[str, str]:
    name = f'{CITY[domain]}_{split}_{index:06d}'
    img = osp.join(root, domain, 'leftImg8bit', split, CITY[domain],
                   f'{name}_leftImg8bit.png')
    seg = osp.join(root, domain, 'gtFine', split, CITY[domain],
                   f'{name}_gtFine_labelTrainIds.png')
    return img, seg


def _sample_seed(seed: int, domain: str, split: str, index: int) -> np.random.SeedSequence:
    """Independent stream per sample; the geometry stream does not depend on domain,
    so both domains share the layout distribution but not the layouts themselves."""
    return np.random.SeedSequence(
        [seed, DOMAINS.index(domain), ('train', 'val').index(split), index])


def make_sample(seed: int, domain: str, split: str, index: int, size: Tuple[int, int],
                gap: str = DEFAULT_GAP) -> Tuple[np.ndarray, np.ndarray]:
    """Return (RGB image, trainId label) of one sample; ``size`` is (width, height).

    The gap preset changes the target's appearance only: the label, and the source
    image, are the same for every ``gap`` (it is not part of the random streams)."""
    look = appearance(domain, gap)
    geom_ss, app_ss = _sample_seed(seed, domain, split, index).spawn(2)
    width, height = size
    label, inst = sample_layout(np.random.default_rng(geom_ss), height, width)
    image = render(label, inst, np.random.default_rng(app_ss), look)
    return image, label


def benchmark_meta(seed: int, size: Tuple[int, int], counts: Dict[str, int],
                   gap: str = DEFAULT_GAP) -> dict:
    return dict(format=FORMAT_VERSION, seed=int(seed), size=[int(s) for s in size],
                counts={k: int(v) for k, v in counts.items()}, gap=gap,
                target=GAP_DESCRIPTIONS[gap])


def benchmark_readme(meta: dict) -> str:
    """The README.md written into a benchmark's root: what it is and how to use it."""
    gap, (w, h) = meta['gap'], meta['size']
    rows = '\n'.join(f'| `{name}` | {text} |' for name, text in GAP_DESCRIPTIONS.items())
    return f"""# Procedural source->target benchmark: gap preset `{gap}`

Target vs source: {meta['target']}.

Written by `mmseg_dida/datasets/procedural.py` (format {meta['format']}, settings also in
`benchmark.json`):

    python tools/generate_benchmark.py <root> --gap {gap} --seed {meta['seed']} \\
        --size {w} {h} --num-train {meta['counts']['train']} --num-val {meta['counts']['val']}

Source images and all labels depend only on seed, size and counts, not on the preset:
only `target/leftImg8bit` differs between presets.

    source/leftImg8bit/{{train,val}}/gamecity/gamecity_<split>_<i>_leftImg8bit.png
    source/gtFine/{{train,val}}/gamecity/gamecity_<split>_<i>_gtFine_labelTrainIds.png
    target/leftImg8bit/{{train,val}}/cameracity/cameracity_<split>_<i>_leftImg8bit.png
    target/gtFine/{{train,val}}/cameracity/...   (train labels are never read)

| preset | target vs source |
|---|---|
{rows}

The configs read `data/procedural`. To train on this benchmark, point their target at
it (their source, `data/procedural/source`, is the same images if it was generated with
the same seed, size and counts; otherwise point the source roots here too):

    python tools/train.py <config> --cfg-options \\
        train_dataloader.dataset.target.data_root=<root>/target \\
        val_dataloader.dataset.data_root=<root>/target \\
        test_dataloader.dataset.data_root=<root>/target

(source-only configs: the last two), or let `python tools/run_benchmark.py --gap {gap}`
do it (it re-roots every dataset of the configs).
"""


def generate_benchmark(root: str, seed: int = 0, size: Tuple[int, int] = (256, 128),
                       counts: Optional[Dict[str, int]] = None, overwrite: bool = False,
                       progress: bool = False, gap: str = DEFAULT_GAP) -> dict:
    """Write the benchmark (both domains, train and val splits) of the gap preset
    ``gap`` (:data:`GAPS`) under ``root``.

    Refuses a non-empty ``root`` unless ``overwrite``. Files are written into a temporary
    sibling folder that is renamed into place at the end, so an interrupted run leaves
    nothing half-written. Returns the metadata also saved as ``<root>/benchmark.json``;
    ``<root>/README.md`` describes the preset and how to train on it.
    """
    appearance('target', gap)  # validates gap before anything is written
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    for split, n in counts.items():
        if split not in ('train', 'val') or int(n) < 1:
            raise ValueError(f'counts must map train/val to positive ints, got {counts}')
    if size[0] < 32 or size[1] < 32:
        raise ValueError(f'size (width, height) must be at least 32x32, got {size}')
    root = osp.abspath(root)
    if osp.isdir(root) and os.listdir(root) and not overwrite:
        raise FileExistsError(
            f'{root} is not empty; refusing to write the procedural benchmark there. '
            'Pass --overwrite (overwrite=True) to replace it.')
    parent = osp.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.procedural-', dir=parent)
    try:
        jobs = [(d, s, i) for d in DOMAINS for s in ('train', 'val')
                for i in range(int(counts[s]))]
        it = jobs
        if progress:
            from tqdm import tqdm
            it = tqdm(jobs, desc='procedural benchmark', unit='img')
        for domain, split, index in it:
            image, label = make_sample(seed, domain, split, index, size, gap)
            img_path, seg_path = sample_paths(tmp, domain, split, index)
            os.makedirs(osp.dirname(img_path), exist_ok=True)
            os.makedirs(osp.dirname(seg_path), exist_ok=True)
            if not (cv2.imwrite(img_path, image[..., ::-1])
                    and cv2.imwrite(seg_path, label)):
                raise OSError(f'could not write {img_path} / {seg_path}')
        meta = benchmark_meta(seed, size, counts, gap)
        with open(osp.join(tmp, 'benchmark.json'), 'w') as f:
            json.dump(meta, f, indent=2)
        with open(osp.join(tmp, 'README.md'), 'w') as f:
            f.write(benchmark_readme(meta))
        if osp.isdir(root):
            shutil.rmtree(root)
        os.rename(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def read_meta(root: str) -> Optional[dict]:
    """The metadata of a benchmark written by :func:`generate_benchmark`, or None.
    Benchmarks written before the gap presets are ``full`` ones."""
    path = osp.join(root, 'benchmark.json')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        meta = json.load(f)
    meta.setdefault('gap', DEFAULT_GAP)
    return meta

"""Rare Class Sampling (RCS), DAFormer (Hoyer et al., CVPR 2022), Sec. 3.3, Eq. 6.

A source class ``c`` is drawn with probability

    P(c) = exp((1 - f_c) / T) / sum_c' exp((1 - f_c') / T)

where ``f_c`` is the fraction of all labelled source pixels that belong to ``c``
and ``T`` the temperature; then a source image containing more than ``min_pixels``
pixels of ``c`` is drawn uniformly. (The dataset wrapper re-crops that image until
``c`` is visible.)

The statistics come from two files in the source ``data_root`` written by
``tools/convert_datasets/*.py`` (same format as DAFormer's converters; for a config's
own class table ``rcs_stats.py --config CONFIG``), counted in train ids:

* ``sample_class_stats.json``: a list with one entry per label file,
  ``{"<trainId>": pixels, ..., "file": "<label path>"}`` (zero counts omitted);
* ``samples_with_class.json``: ``{"<trainId>": [["<label path>", pixels], ...]}``.

Label paths are matched to dataset samples by file name, so files written by the
original DAFormer converters work too.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import numpy as np

__all__ = [
    'SAMPLE_CLASS_STATS', 'SAMPLES_WITH_CLASS', 'rcs_class_probs', 'write_rcs_stats',
    'load_rcs_stats', 'RareClassSampler'
]

SAMPLE_CLASS_STATS = 'sample_class_stats.json'
SAMPLES_WITH_CLASS = 'samples_with_class.json'


def rcs_class_probs(class_pixels: Dict[int, int],
                    temperature: float) -> Tuple[List[int], np.ndarray]:
    """RCS class probabilities, DAFormer Eq. 6: softmax((1 - f_c) / T).

    Args:
        class_pixels (dict[int, int]): Total source pixels per class (classes that
            never occur are absent and are never sampled).
        temperature (float): T > 0; small T favours rare classes more strongly.

    Returns:
        tuple[list[int], np.ndarray]: The classes (ascending frequency, as DAFormer)
        and their probabilities (float64, sums to 1).
    """
    if temperature <= 0:
        raise ValueError(f'RCS temperature must be > 0, got {temperature}')
    classes = sorted(class_pixels, key=lambda c: class_pixels[c])
    counts = np.array([class_pixels[c] for c in classes], dtype=np.float64)
    if len(classes) == 0 or counts.sum() <= 0:
        raise ValueError('RCS: the class statistics contain no labelled pixel')
    logits = (1.0 - counts / counts.sum()) / temperature
    logits -= logits.max()
    probs = np.exp(logits)
    return classes, probs / probs.sum()


def _atomic_write_json(obj, path: str) -> None:
    tmp = path + '.part'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def write_rcs_stats(out_dir: str, sample_stats: Sequence[dict]) -> None:
    """Write both RCS statistics files (see the module docstring) into ``out_dir``.

    Args:
        sample_stats: One dict per label file: ``{class: pixels, ..., 'file': path}``.
    """
    os.makedirs(out_dir, exist_ok=True)
    stats = [{**{str(k): int(v) for k, v in s.items() if k != 'file'},
              'file': s['file']} for s in sample_stats]
    samples_with_class: Dict[str, list] = {}
    for s in stats:
        for c, n in s.items():
            if c != 'file':
                samples_with_class.setdefault(c, []).append([s['file'], n])
    samples_with_class = dict(sorted(samples_with_class.items(),
                                     key=lambda kv: int(kv[0])))
    _atomic_write_json(stats, osp.join(out_dir, SAMPLE_CLASS_STATS))
    _atomic_write_json(samples_with_class, osp.join(out_dir, SAMPLES_WITH_CLASS))


def load_rcs_stats(data_root: str) -> Tuple[Dict[int, int], Dict[int, list]]:
    """Read the RCS files of ``data_root``: (class -> total pixels, class -> samples).

    Raises:
        FileNotFoundError: naming the missing file and the command that writes it.
    """
    loaded = []
    for name in (SAMPLE_CLASS_STATS, SAMPLES_WITH_CLASS):
        path = osp.join(data_root, name)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'Rare class sampling needs {path}, which does not exist. Write it '
                'with tools/convert_datasets/{gta,synthia,cityscapes,rcs_stats}.py '
                '(see data/README.md; your own data: rcs_stats.py --config CONFIG) or '
                'set rare_class_sampling=None.')
        with open(path) as f:
            loaded.append(json.load(f))
    sample_stats, samples_with_class = loaded
    class_pixels: Dict[int, int] = {}
    for s in sample_stats:
        for c, n in s.items():
            if c != 'file':
                class_pixels[int(c)] = class_pixels.get(int(c), 0) + int(n)
    return class_pixels, {int(c): v for c, v in samples_with_class.items()}


class RareClassSampler:
    """Draws (class, source index) pairs by RCS for one source dataset.

    Args:
        data_root (str): Folder holding the two statistics files.
        seg_map_paths (list[str]): The source dataset's label paths, in index order.
        class_temp (float): Temperature T. DAFormer: 0.01.
        min_pixels (int): A file is a candidate for class c only with more than this
            many pixels of c. DAFormer: 3000.
    """

    def __init__(self, data_root: str, seg_map_paths: Sequence[str],
                 class_temp: float = 0.01, min_pixels: int = 3000):
        class_pixels, samples_with_class = load_rcs_stats(data_root)
        self.classes, self.probs = rcs_class_probs(class_pixels, class_temp)
        name_to_idx: Dict[str, int] = {}
        for i, p in enumerate(seg_map_paths):
            name = osp.basename(p)
            if name in name_to_idx:
                raise ValueError(
                    f'RCS matches statistics to samples by file name, but {name} '
                    'occurs twice in the source dataset')
            name_to_idx[name] = i
        stats_file = osp.join(data_root, SAMPLES_WITH_CLASS)
        self.samples_with_class: Dict[int, np.ndarray] = {}
        for c in self.classes:
            idx = []
            for file, n in samples_with_class.get(c, []):
                if n > min_pixels:
                    name = osp.basename(file)
                    if name not in name_to_idx:
                        raise KeyError(
                            f'{stats_file} lists {file}, which is not a sample of the '
                            'source dataset: re-run the converter for this data_root')
                    idx.append(name_to_idx[name])
            if not idx:
                raise ValueError(
                    f'RCS: no source sample has more than min_pixels={min_pixels} '
                    f'pixels of class {c} (from {stats_file}); lower min_pixels')
            self.samples_with_class[c] = np.array(idx, dtype=np.int64)

    def sample(self, rng: np.random.Generator) -> Tuple[int, int]:
        """Draw a class by RCS and a source index containing it."""
        c = self.classes[int(rng.choice(len(self.classes), p=self.probs))]
        candidates = self.samples_with_class[c]
        return c, int(candidates[int(rng.integers(len(candidates)))])

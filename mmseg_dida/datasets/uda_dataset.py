"""Pairs one source and one target sample per item for unsupervised domain adaptation.

An item is ``{'source': packed, 'target': packed}`` where each ``packed`` is what the
wrapped dataset's pipeline returns (``dict(inputs=..., data_samples=...)`` after
``PackSegInputs``/``PackUDAInputs``). The length is the source length; the sampler's
index picks the source sample and the target index is drawn independently for every
item, so no product-length index list is ever built (GTA x Cityscapes would be 74M
pairs; DAFormer's wrapper had that length).

With ``rare_class_sampling`` on, the source sample is drawn by Rare Class Sampling
(DAFormer, Sec. 3.3; :mod:`mmseg_dida.datasets.rcs`) and the sampler's index is unused.
"""
import os
import os.path as osp
from typing import Optional

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmseg.registry import DATASETS

from .rcs import RareClassSampler

_RCS_KEYS = ('class_temp', 'min_pixels', 'min_crop_ratio')


def _build(cfg, name):
    if not isinstance(cfg, dict):
        return cfg
    try:
        return DATASETS.build(cfg)
    except ValueError as e:
        # mmengine fails to serialise an empty data list with this numpy message
        if 'need at least one array' not in str(e):
            raise
        raise FileNotFoundError(
            f"UDADataset: the {name} dataset ({cfg.get('type')}, data_root="
            f"{cfg.get('data_root')}, data_prefix={cfg.get('data_prefix')}) found no "
            'sample') from e


@DATASETS.register_module()
class UDADataset:
    """Source/target pairing wrapper with optional Rare Class Sampling.

    Args:
        source (dict): Config (or instance) of the labelled source dataset.
        target (dict): Config (or instance) of the target dataset; its pipeline may
            omit ``LoadAnnotations`` (unlabelled target).
        rare_class_sampling (dict, optional): ``dict(class_temp=0.01, min_pixels=3000,
            min_crop_ratio=0.5)`` (DAFormer; HRDA/MIC use ``min_crop_ratio=2.0``).
            The statistics files are read from the source ``data_root``. ``None``
            (default) switches RCS off.
        seed (int, optional): Seed of the wrapper's own draws (target index, RCS class
            and file). ``None`` takes the seed from numpy's global generator, which
            mmengine seeds from the runner's seed per rank and worker. The stream is
            always keyed by (seed, rank, dataloader worker): ranks and workers draw
            independently and a run is reproducible for a fixed seed, world size and
            ``num_workers``. The pipelines' own randomness (crop, flip) stays with
            numpy's global generator, as in mmseg.
    """

    def __init__(self,
                 source,
                 target,
                 rare_class_sampling: Optional[dict] = None,
                 seed: Optional[int] = None):
        self.source = _build(source, 'source')
        self.target = _build(target, 'target')
        self.seed = seed
        self._rng = None
        self._rng_key = None
        self.metainfo = self.source.metainfo
        if self.target.metainfo.get('classes') != self.metainfo.get('classes'):
            raise ValueError(
                'UDADataset: source and target datasets have different classes: '
                f"{self.metainfo.get('classes')} vs "
                f"{self.target.metainfo.get('classes')}")
        for name, ds in (('source', self.source), ('target', self.target)):
            if len(ds) == 0:
                prefix = getattr(ds, 'data_prefix', {})
                raise FileNotFoundError(
                    f'UDADataset: the {name} dataset ({type(ds).__name__}, data_root='
                    f"{getattr(ds, 'data_root', None)}, data_prefix={prefix}) found no "
                    'sample')

        self.rcs = None
        self.rcs_min_pixels = self.rcs_min_crop_ratio = None
        if rare_class_sampling is not None:
            self.rcs = self._build_rcs(dict(rare_class_sampling))

    def _build_rcs(self, cfg: dict) -> RareClassSampler:
        if set(cfg) != set(_RCS_KEYS):
            raise KeyError(
                f'UDADataset: rare_class_sampling needs exactly the keys {_RCS_KEYS}, '
                f'got {sorted(cfg)}')
        if cfg['min_pixels'] < 0 or cfg['min_crop_ratio'] < 0:
            raise ValueError('UDADataset: rare_class_sampling min_pixels and '
                             f'min_crop_ratio must be >= 0, got {cfg}')
        data_root = getattr(self.source, 'data_root', None)
        if not data_root:
            raise ValueError('UDADataset: rare class sampling reads its statistics '
                             'from the source data_root, which is not set')
        seg_maps = []
        for i in range(len(self.source)):
            info = self.source.get_data_info(i)
            if 'seg_map_path' not in info:
                raise ValueError('UDADataset: rare class sampling needs a labelled '
                                 f'source, but source sample {i} has no seg_map_path')
            seg_maps.append(info['seg_map_path'])
        rcs = RareClassSampler(data_root, seg_maps, cfg['class_temp'],
                               cfg['min_pixels'])
        self.rcs_min_pixels = cfg['min_pixels']
        self.rcs_min_crop_ratio = cfg['min_crop_ratio']
        print_log(
            'RCS classes and probabilities: ' + ', '.join(
                f'{c}: {p:.4f}' for c, p in zip(rcs.classes, rcs.probs)), 'current')
        return rcs

    def full_init(self):
        self.source.full_init()
        self.target.full_init()

    def __len__(self):
        return len(self.source)

    @property
    def rng(self) -> np.random.Generator:
        """The wrapper's generator for the current (process, dataloader worker)."""
        info = torch.utils.data.get_worker_info()
        worker = -1 if info is None else info.id
        key = (os.getpid(), worker)
        if self._rng_key != key:
            base = (self.seed if self.seed is not None else
                    int(np.random.randint(0, 2**31 - 1)))
            rank, _ = get_dist_info()
            self._rng = np.random.default_rng(
                np.random.SeedSequence([base, rank, worker + 1]))
            self._rng_key = key
        return self._rng

    def rng_state(self) -> Optional[dict]:
        """State of this process's generator (None before its first draw); saved
        in checkpoints so that a resumed run draws the same pairs."""
        return None if self._rng is None else self._rng.bit_generator.state

    def set_rng_state(self, state: Optional[dict], device=None) -> None:
        """Restore :meth:`rng_state` for the current process (None: start afresh)."""
        if state is None:
            self._rng = self._rng_key = None
            return
        rng = np.random.default_rng()
        rng.bit_generator.state = state
        info = torch.utils.data.get_worker_info()
        self._rng = rng
        self._rng_key = (os.getpid(), -1 if info is None else info.id)

    def _rare_class_source(self):
        """RCS: a source sample of a rare class, re-cropped until it shows the class.

        DAFormer re-applies the source pipeline (a new random crop) up to 10 times
        while the crop has ``<= min_pixels * min_crop_ratio`` pixels of the class.
        """
        c, idx = self.rcs.sample(self.rng)
        sample = self.source[idx]
        if self.rcs_min_crop_ratio > 0:
            for _ in range(10):
                seg = sample['data_samples'].gt_sem_seg.data
                min_class_pixels = self.rcs_min_pixels * self.rcs_min_crop_ratio
                if int((seg == c).sum()) > min_class_pixels:
                    break
                sample = self.source[idx]
        return sample

    def __getitem__(self, idx):
        source = self._rare_class_source() if self.rcs is not None else self.source[idx]
        target = self.target[int(self.rng.integers(len(self.target)))]
        return dict(source=source, target=target)

    def __repr__(self):
        rcs = 'off' if self.rcs is None else (
            f'{self.rcs.probs.size} classes, min_pixels={self.rcs_min_pixels}, '
            f'min_crop_ratio={self.rcs_min_crop_ratio}')
        src_root = osp.normpath(str(getattr(self.source, 'data_root', '')))
        return (f'UDADataset(source={type(self.source).__name__}[{len(self.source)}] '
                f'{src_root}, target={type(self.target).__name__}[{len(self.target)}], '
                f'rcs={rcs})')

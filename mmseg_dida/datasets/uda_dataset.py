"""Pairs one source and one target sample per item for unsupervised domain adaptation.

An item is ``{'source': packed, 'target': packed}`` where each ``packed`` is what the
wrapped dataset's pipeline returns (``dict(inputs=..., data_samples=...)`` after
``PackSegInputs``). The length is the source length; the target index is drawn
independently for every item, so no product-length index list is ever built
(GTA x Cityscapes would be 74M pairs).
"""
import numpy as np
from mmengine.dataset import force_full_init

from mmseg.registry import DATASETS


@DATASETS.register_module()
class UDADataset:
    """Source/target pairing wrapper.

    Args:
        source (dict): Config of the labelled source dataset.
        target (dict): Config of the (unlabelled) target dataset.
        seed (int, optional): Seed of the target-index stream. ``None`` draws from
            numpy's global generator, which mmengine seeds per rank and worker.
    """

    def __init__(self, source, target, seed=None):
        self.source = DATASETS.build(source) if isinstance(source, dict) else source
        self.target = DATASETS.build(target) if isinstance(target, dict) else target
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self.metainfo = self.source.metainfo
        if self.target.metainfo.get('classes') != self.metainfo.get('classes'):
            raise ValueError(
                'UDADataset: source and target datasets have different classes: '
                f"{self.metainfo.get('classes')} vs "
                f"{self.target.metainfo.get('classes')}")

    def full_init(self):
        self.source.full_init()
        self.target.full_init()

    @force_full_init
    def __len__(self):
        return len(self.source)

    def _target_index(self):
        rng = self._rng if self._rng is not None else np.random
        return int(rng.integers(len(self.target)) if self._rng is not None
                   else rng.randint(len(self.target)))

    def __getitem__(self, idx):
        return dict(source=self.source[idx], target=self.target[self._target_index()])

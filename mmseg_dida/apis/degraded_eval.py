"""Evaluating a trained model on degraded images, shared by the analysis tools
(tools/analysis/bridge_curve.py, hrda_scales.py): the model of a checkpoint, the test
set and every extra test set of its config, and one loop that hands out each batch
clean and degraded with DiDA's forward process (Eq. 1) at the given timesteps, with
the same eps per image at every t and for every model (seeded by the image's index),
so that two models see the same degraded images. A baseline (no DiDA) is degraded
with DiDA's default degradation.
"""
import sys
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.runner import Runner
from tqdm import tqdm

from ..deploy.model_loading import build_model_from_checkpoint
from ..models.uda.dida import DiDA
from ..models.utils.degradation import Degradation

__all__ = ['load_model', 'domain_loaders', 'image_noise', 'degraded_pass',
           'DegradedBatch', 'degraded_batches']


def load_model(cfg: Config, checkpoint: str, device: str):
    """The trained model of ``cfg`` (a UDA model or a plain segmentor) with the
    checkpoint's weights, in eval mode; its segmentor; its DiDA plug-in or None."""
    model, _ = build_model_from_checkpoint(cfg, checkpoint, strict=True)
    model.to(device).eval()
    plugin = next((p for p in getattr(model, 'plugins', []) if isinstance(p, DiDA)),
                  None)
    return model, getattr(model, 'student', model), plugin


def domain_loaders(cfg: Config) -> Dict[str, object]:
    """name -> test dataloader config: the primary test set ('target' when the test
    loop has extra sets, else 'test') and every extra set of a multi-dataset loop."""
    extra = (cfg.get('test_cfg') or {}).get('extra') or {}
    loaders = {'target' if extra else 'test': cfg.test_dataloader}
    for name, item in extra.items():
        loaders[name] = item['dataloader']
    return loaders


def image_noise(degradation: Degradation, x0: torch.Tensor, seed: int,
                first_index: int) -> torch.Tensor:
    """eps of each image at the degradation's noise resolution, from a generator
    seeded by (seed, the image's index in its dataset): the same at every t and for
    every model."""
    n, c, h, w = x0.shape
    s = degradation.noise_downsample
    out = []
    for i in range(n):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + first_index + i)
        out.append(torch.randn((c, h // s, w // s), generator=gen))
    return torch.stack(out).to(x0)


@torch.no_grad()
def degraded_pass(segmentor, plugin, x_t: torch.Tensor, t: torch.Tensor
                  ) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """Features and logits of the degraded path: DiDA's (fused features, its
    segmentation path) or, for a baseline, h o g."""
    if plugin is not None:
        feats, logits = plugin.segment_degraded(segmentor, x_t, t)
    else:
        feats = segmentor.extract_feat(x_t)
        logits = segmentor.decode_head(feats)
    return list(feats), logits


@dataclass
class DegradedBatch:
    """One batch of one domain at one timestep: ``x`` is the clean batch ``x0`` when
    ``step`` is None (``t`` None), else x0 degraded at ``t`` (N,)."""
    domain: str
    step: Optional[int]
    x: torch.Tensor
    t: Optional[torch.Tensor]
    x0: torch.Tensor
    samples: list
    first_index: int
    classes: Optional[list] = None  # the dataset's class names


def degraded_batches(cfg: Config, segmentor, degradation: Degradation,
                     steps: Sequence[Optional[int]], max_images: int = 0,
                     seed: int = 0, device: str = 'cpu', desc: str = 'evaluate'
                     ) -> Iterator[DegradedBatch]:
    """Every batch of every test set of ``cfg`` (at most ``max_images`` images each;
    0: all), preprocessed by ``segmentor``, at each of ``steps`` (None: clean), with a
    progress bar per domain."""
    for domain, loader_cfg in domain_loaders(cfg).items():
        loader = Runner.build_dataloader(loader_cfg)
        total = len(loader.dataset) if not max_images else min(max_images,
                                                               len(loader.dataset))
        bar = tqdm(total=total * len(steps), desc=f'{desc}: {domain}', unit='img',
                   file=sys.stdout, mininterval=2.0)
        classes = loader.dataset.metainfo.get('classes')
        classes = list(classes) if classes else None
        seen = 0
        for batch in loader:
            if max_images and seen >= max_images:
                break
            data = segmentor.data_preprocessor(batch, False)
            x0 = data['inputs'].to(device)
            samples = data['data_samples']
            if max_images:
                keep = max_images - seen
                x0, samples = x0[:keep], samples[:keep]
            n = x0.shape[0]
            noise = image_noise(degradation, x0, seed, seen)
            for step in steps:
                if step is None:
                    yield DegradedBatch(domain, None, x0, None, x0, samples, seen,
                                        classes)
                else:
                    t = torch.full((n, ), int(step), dtype=torch.long, device=device)
                    x, _ = degradation(x0, t, noise=noise)
                    yield DegradedBatch(domain, int(step), x, t, x0, samples, seen,
                                        classes)
                bar.update(n)
            seen += n
        bar.close()

"""A time-conditioned segmentation path for degraded images (a variant, not the paper).

The authors' earlier public code (../shared/reference/dida_method.md, "DAFormerHeadt")
segments degraded images with h's per-level embeddings (shared with the clean path),
a time FiLM on each embedded level, a fusion layer of its own (with its own
BatchNorm) and h's classifier (shared)::

    e_i   = Embed_i(feats_i)                      (h's, shared)
    e_i^t = e_i * (MLP_s^i(Embed(t)) + 1) + MLP_b^i(Embed(t))
    logits = cls_seg(Fusion'(concat_i e_i^t))     (Fusion' own, cls_seg shared)

The clean path keeps h's fusion, so its statistics and weights see clean features
only. The paper (Eq. 6) instead segments degraded images with h itself; DiDA uses this
path only with ``seg_path='time_conditioned'``. Training-only: dropped at deployment.
"""
import copy
from typing import Sequence

import torch
from torch import Tensor, nn

from ..utils.time_embedding import TimeEmbedding, TimeFiLM

__all__ = ['TimeConditionedSegPath']


class TimeConditionedSegPath(nn.Module):
    """The degraded segmentation path around a decode head that exposes
    ``embed_levels``, ``level_embed_channels``, ``fusion_layer`` and ``cls_seg``
    (DAFormerHead, WeightedSegformerHead).

    Args:
        head: The decode head h (not registered as a child: it stays the student's).
        embed_dim, time_dim: Time embedding sizes (as in the DiffusionEncoder).
    """

    def __init__(self, head: nn.Module, embed_dim: int = 16, time_dim: int = 256):
        super().__init__()
        missing = [a for a in ('embed_levels', 'level_embed_channels', 'fusion_layer',
                               'cls_seg') if not hasattr(head, a)]
        if missing:
            raise TypeError(f'TimeConditionedSegPath: {type(head).__name__} has no '
                            f'{", ".join(missing)}; the time-conditioned path needs a '
                            'head with per-level embeddings and a fusion layer '
                            '(DAFormerHead, WeightedSegformerHead)')
        channels: Sequence[int] = head.level_embed_channels
        self.time_embed = TimeEmbedding(embed_dim, time_dim)
        self.film = nn.ModuleList(TimeFiLM(time_dim, c) for c in channels)
        self.fusion = copy.deepcopy(head.fusion_layer)

    def forward(self, head: nn.Module, feats, t: Tensor) -> Tensor:
        """Logits of the degraded images whose backbone features are ``feats``."""
        levels = head.embed_levels(feats)
        emb = self.time_embed(t)
        levels = [film(e, emb) for film, e in zip(self.film, levels)]
        return head.cls_seg(self.fusion(torch.cat(levels, dim=1)))

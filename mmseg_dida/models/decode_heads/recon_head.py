"""DiDA's reconstruction head h' (arXiv 2412.10339, Sec. 3.2).

h' reads the fused features (g + g')(x_t) of a degraded image and the timestep t and
predicts the degradation's reconstruction target: the noise eps of the diffusion
forward process (Eq. 1), or the clean image x_0 for blur/mask degradations. Its loss is

    L_R = || h'((g + g')(x_t), t) - eps ||_2^2                       (Eq. 5, MSE)

computed at the head's output resolution (stride of the first feature level, 1/4 for
MiT and ResNet); a target of another size is resized to it (area when shrinking: per
pixel noise pooled over s x s pixels has std 1/s, 0.25 at stride 4; ``target_scale=
'unit_variance'`` multiplies it back by s, so h' predicts unit-variance noise as the
authors' earlier code's h' did). h' is training-only: it is dropped at deployment.
"""
from typing import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor, nn

from ..utils.time_embedding import TimeEmbedding, TimeFiLM

__all__ = ['ReconHead', 'PRED_INITS', 'TARGET_SCALES']

PRED_INITS = ('default', 'zero')
TARGET_SCALES = ('none', 'unit_variance')


@MODELS.register_module()
class ReconHead(BaseModule):
    """Reconstruction head h'.

    Args:
        in_channels: Channels of the feature levels read (one per ``in_index``).
        in_index: Which levels of the backbone output are read.
        channels: Width of the per-level embeddings and the fusion.
        out_channels: Channels of the prediction (3: eps or x_0 of an RGB image).
        arch: 'full' (the paper's separate h'): per-level 1x1 embeddings upsampled to
            the finest level, concatenated, 1x1 fusion (GroupNorm, GELU), time FiLM,
            1x1 prediction.
            'linear' (ablation "+ L_R" without a separate h'): one 1x1 convolution on
            the finest level, no time input.
        embed_dim, time_dim: Time embedding sizes (as in the DiffusionEncoder).
        loss_weight: lambda_R, applied in :meth:`loss`; required (its default is
            :class:`~mmseg_dida.models.uda.DiDA`'s ``lambda_r``: the paper's 5 for
            MiT/DAFormer, 1 for DeepLabV2 set in those configs).
        pred_init: 'default' (torch's initialisation of the prediction layer) or
            'zero' (weight and bias 0: h' predicts 0 at first, so L_R sends no
            gradient into the features until h' has learnt something).
        target_scale: 'none' (the target as resized) or 'unit_variance' (a target
            area-pooled by integer factors s_h x s_w is multiplied by
            sqrt(s_h s_w): unit variance again for noise drawn independently per
            pixel with unit variance).
    """

    def __init__(self, in_channels: Sequence[int] = (64, 128, 320, 512),
                 in_index: Sequence[int] = (0, 1, 2, 3), channels: int = 64,
                 out_channels: int = 3, arch: str = 'full', embed_dim: int = 16,
                 time_dim: int = 256, *, loss_weight: float,
                 pred_init: str = 'default', target_scale: str = 'none',
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if pred_init not in PRED_INITS:
            raise ValueError(f'ReconHead: pred_init must be one of {PRED_INITS}, got '
                             f'{pred_init!r}')
        if target_scale not in TARGET_SCALES:
            raise ValueError(f'ReconHead: target_scale must be one of {TARGET_SCALES}, '
                             f'got {target_scale!r}')
        self.pred_init = pred_init
        self.target_scale = target_scale
        if loss_weight <= 0:
            raise ValueError(f'ReconHead: loss_weight (lambda_R) must be > 0, got '
                             f'{loss_weight}; train without h\' by not building it')
        if arch not in ('full', 'linear'):
            raise ValueError("ReconHead: arch must be 'full' or 'linear', "
                             f'got {arch!r}')
        if len(in_channels) != len(in_index):
            raise ValueError(f'ReconHead: in_channels {list(in_channels)} and in_index '
                             f'{list(in_index)} must have the same length')
        self.arch = arch
        self.loss_weight = loss_weight
        self.in_index = list(in_index)
        if arch == 'linear':
            self.pred = nn.Conv2d(in_channels[0], out_channels, 1)
            self.reset_prediction()
            return
        self.embed = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(channels * len(in_channels), channels, 1),
            nn.GroupNorm(1, channels), nn.GELU())
        self.time_embed = TimeEmbedding(embed_dim, time_dim)
        self.film = TimeFiLM(time_dim, channels)
        self.pred = nn.Conv2d(channels, out_channels, 1)
        self.reset_prediction()

    @torch.no_grad()
    def reset_prediction(self) -> None:
        """Apply ``pred_init`` to the prediction layer (nothing for 'default')."""
        if self.pred_init == 'zero':
            self.pred.weight.zero_()
            self.pred.bias.zero_()

    def init_weights(self) -> None:
        super().init_weights()
        self.reset_prediction()

    def forward(self, feats: Sequence[Tensor], t: Tensor) -> Tensor:
        """Predict the reconstruction target, (N, out_channels, h_0, w_0)."""
        feats = [feats[i] for i in self.in_index]
        if self.arch == 'linear':
            return self.pred(feats[0])
        size = feats[0].shape[-2:]
        x = [
            F.interpolate(e(f), size=size, mode='bilinear', align_corners=False)
            if f.shape[-2:] != size else e(f) for e, f in zip(self.embed, feats)
        ]
        x = self.fuse(torch.cat(x, dim=1))
        x = self.film(x, self.time_embed(t))
        return self.pred(x)

    def match_target(self, pred: Tensor, target: Tensor) -> Tensor:
        """Resize the target to the prediction's size (area when shrinking), and
        rescale it by ``target_scale``."""
        if target.shape[-2:] == pred.shape[-2:]:
            return target
        shrink = target.shape[-2] > pred.shape[-2]
        if self.target_scale == 'unit_variance':
            (th, tw), (ph, pw) = target.shape[-2:], pred.shape[-2:]
            if not shrink or th % ph or tw % pw:
                raise ValueError(
                    "ReconHead: target_scale='unit_variance' needs a target pooled "
                    f'by integer factors, got {th}x{tw} -> {ph}x{pw}')
            return F.avg_pool2d(target, (th // ph, tw // pw)) * (
                (th // ph) * (tw // pw)) ** 0.5
        mode = 'area' if shrink else 'bilinear'
        kw = {} if shrink else dict(align_corners=False)
        return F.interpolate(target, size=pred.shape[-2:], mode=mode, **kw)

    def loss(self, feats: Sequence[Tensor], t: Tensor, target: Tensor) -> Tensor:
        """lambda_R * L_R: the mean squared error of the prediction against
        ``target``, times ``loss_weight``. In float32 under mixed precision: the
        prediction is cast up, the target (eps) is never rounded to bf16/fp16."""
        pred = self(feats, t).float()
        mse = F.mse_loss(pred, self.match_target(pred, target.float()))
        return self.loss_weight * mse

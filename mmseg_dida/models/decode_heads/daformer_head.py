"""DAFormer decoder (Hoyer et al., "DAFormer: Improving Network Architectures and
Training Strategies for Domain-Adaptive Semantic Segmentation", CVPR 2022, Sec. 3.1 and
Fig. 3: context-aware feature fusion)."""
from typing import List, Sequence, Union

import torch
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.decode_heads.sep_aspp_head import DepthwiseSeparableASPPModule
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from torch import Tensor, nn

from .weighted_loss import SegWeightLossMixin

__all__ = ['DAFormerHead', 'MLPEmbedding', 'SepASPPFusion']


class MLPEmbedding(nn.Module):
    """Per-level embedding: a linear layer applied to every token (pixel) of a
    feature map, (N, C_in, H, W) -> (N, C_e, H, W). Named ``proj`` as in SegFormer's
    and DAFormer's ``MLP``, so their checkpoints' keys match."""

    def __init__(self, in_channels: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_channels, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        x = self.proj(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).reshape(n, -1, h, w)


class SepASPPFusion(nn.Module):
    """DAFormer's context-aware fusion: parallel depthwise-separable 3x3 convs with
    dilations ``dilations`` (a 1x1 conv for dilation 1), no image pooling, each
    conv-BN-ReLU, concatenated and fused by a 3x3 conv-BN-ReLU bottleneck."""

    def __init__(self, in_channels: int, channels: int, dilations: Sequence[int],
                 norm_cfg, act_cfg):
        super().__init__()
        self.aspp_modules = DepthwiseSeparableASPPModule(
            dilations=tuple(dilations), in_channels=in_channels, channels=channels,
            conv_cfg=None, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.bottleneck = ConvModule(
            len(dilations) * channels, channels, kernel_size=3, padding=1,
            norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x: Tensor) -> Tensor:
        return self.bottleneck(torch.cat(self.aspp_modules(x), dim=1))


@MODELS.register_module()
class DAFormerHead(SegWeightLossMixin, BaseDecodeHead):
    """DAFormer head.

    Every selected backbone level i is embedded to ``embed_dims[i]`` channels by a
    linear layer (no norm, no activation), bilinearly resized to the resolution of
    the first selected level (stride 4 for MiT), concatenated, and fused by
    :class:`SepASPPFusion` (``fusion='sep_aspp'``, the paper's DAFormer) or by a
    1x1 conv-BN-ReLU (``fusion='conv'``, the "SegFormer with C_e=256" ablation and
    HRDA's attention head); then dropout and the 1x1 classifier ``conv_seg``.
    Supports the per-pixel ``seg_weight`` loss (:class:`SegWeightLossMixin`).

    Args:
        embed_dims: Embedding channels per level, or one value for all. Paper: 256.
        fusion: 'sep_aspp' (paper) or 'conv'.
        fusion_dilations: Dilations of the fusion ASPP. Paper: (1, 6, 12, 18).
        **kwargs: ``BaseDecodeHead`` arguments (in_channels as a list, in_index,
            channels (paper 256), num_classes, dropout_ratio (paper 0.1),
            norm_cfg (paper BN), ...). ``input_transform`` is 'multiple_select'.
    """

    def __init__(self,
                 embed_dims: Union[int, Sequence[int]] = 256,
                 fusion: str = 'sep_aspp',
                 fusion_dilations: Sequence[int] = (1, 6, 12, 18),
                 **kwargs):
        if kwargs.pop('input_transform', 'multiple_select') != 'multiple_select':
            raise ValueError("DAFormerHead: input_transform must be 'multiple_select'")
        super().__init__(input_transform='multiple_select', **kwargs)
        name = type(self).__name__
        if self.align_corners:
            raise ValueError(f'{name}: align_corners must be False (as in DAFormer)')
        if isinstance(embed_dims, int):
            embed_dims = [embed_dims] * len(self.in_channels)
        embed_dims = list(embed_dims)
        if len(embed_dims) != len(self.in_channels) or min(embed_dims) <= 0:
            raise ValueError(f'{name}: embed_dims {embed_dims} must give one positive '
                             f'value per input level ({len(self.in_channels)})')
        if fusion not in ('sep_aspp', 'conv'):
            raise ValueError(f"{name}: fusion must be 'sep_aspp' or 'conv', "
                             f'got {fusion!r}')
        if fusion == 'sep_aspp' and (not fusion_dilations or any(
                int(d) != d or d < 1 for d in fusion_dilations)):
            raise ValueError(f'{name}: fusion_dilations must be positive integers, '
                             f'got {fusion_dilations}')
        self.embed_dims = embed_dims
        self.fusion = fusion
        self.embed_layers = nn.ModuleDict({
            str(i): MLPEmbedding(c, e)
            for i, c, e in zip(self.in_index, self.in_channels, embed_dims)
        })
        if fusion == 'sep_aspp':
            self.fuse_layer = SepASPPFusion(
                sum(embed_dims), self.channels, fusion_dilations,
                norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        else:
            self.fuse_layer = ConvModule(
                sum(embed_dims), self.channels, kernel_size=1,
                norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)

    # The split below (per-level embeddings, fusion, classifier) lets a degraded
    # segmentation path reuse h's embeddings with a fusion of its own
    # (:class:`~mmseg_dida.models.decode_heads.TimeConditionedSegPath`).
    @property
    def level_embed_channels(self):
        return list(self.embed_dims)

    @property
    def fusion_layer(self) -> nn.Module:
        return self.fuse_layer

    def embed_levels(self, inputs) -> List[Tensor]:
        """Every selected level embedded and resized to the first level's size."""
        feats = self._transform_inputs(inputs)
        out_size = feats[0].shape[2:]
        embedded = []
        for i, x in zip(self.in_index, feats):
            e = self.embed_layers[str(i)](x)
            if e.shape[2:] != out_size:
                e = resize(e, size=out_size, mode='bilinear',
                           align_corners=self.align_corners)
            embedded.append(e)
        return embedded

    def forward(self, inputs) -> Tensor:
        return self.cls_seg(self.fuse_layer(torch.cat(self.embed_levels(inputs), dim=1)))

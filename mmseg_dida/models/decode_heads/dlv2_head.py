"""DeepLabV2 decode head (Chen et al., "DeepLab: Semantic Image Segmentation with Deep
Convolutional Nets, Atrous Convolution, and Fully Connected CRFs", TPAMI 2018, Sec. 3.1
and Fig. 7: ASPP-L), the CNN baseline head of DAFormer/HRDA/MIC/DiDA."""
from typing import Sequence

from mmseg.models.decode_heads.aspp_head import ASPPModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import Tensor

from .weighted_loss import SegWeightLossMixin

__all__ = ['DLV2Head']


@MODELS.register_module()
class DLV2Head(SegWeightLossMixin, BaseDecodeHead):
    """DeepLabV2 ASPP classifier: one 3x3 conv with bias per dilation, each mapping
    the last backbone level straight to class logits (no norm, no activation, no
    dropout); the branch logits are summed.

    Args:
        dilations: ASPP dilations. DeepLabV2 (ASPP-L): (6, 12, 18, 24); the previous
            UDA works' variant ("dlv2red" in DAFormer) uses (6, 12).
        **kwargs: ``BaseDecodeHead`` arguments (in_channels=2048, in_index=3,
            num_classes, ...). ``channels``, ``dropout_ratio`` and ``norm_cfg`` are
            fixed by the architecture and must not be given.
        init_cfg: Default Normal(std=0.01) on the ASPP convs (DeepLabV2 init).
    """

    def __init__(self,
                 dilations: Sequence[int] = (6, 12, 18, 24),
                 init_cfg=dict(type='Normal', std=0.01,
                               override=dict(name='aspp_modules')),
                 **kwargs):
        fixed = sorted(k for k in ('channels', 'dropout_ratio', 'norm_cfg')
                       if k in kwargs)
        if fixed:
            raise ValueError(f'DLV2Head: {fixed} are fixed by DeepLabV2 (no '
                             'intermediate channels, no dropout, no norm); remove '
                             'them from the config')
        if not dilations or any(int(d) != d or d < 1 for d in dilations):
            raise ValueError(f'DLV2Head: dilations must be positive integers, got '
                             f'{dilations}')
        super().__init__(channels=1, dropout_ratio=0, norm_cfg=None,
                         init_cfg=init_cfg, **kwargs)
        if not isinstance(self.in_channels, int):
            raise ValueError('DLV2Head takes one feature level: in_channels must be '
                             f'an int, got {self.in_channels}')
        del self.conv_seg
        self.dilations = tuple(dilations)
        self.aspp_modules = ASPPModule(
            self.dilations, self.in_channels, self.num_classes,
            conv_cfg=self.conv_cfg, norm_cfg=None, act_cfg=None)

    def forward(self, inputs) -> Tensor:
        x = self._transform_inputs(inputs)
        outs = self.aspp_modules(x)
        out = outs[0]
        for o in outs[1:]:
            out = out + o
        return out

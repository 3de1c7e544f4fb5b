"""DiDA as a plug-in of a self-training UDA method (DAFormer, HRDA, MIC).

DiDA (NeurIPS 2025, arXiv 2412.10339) adds to the self-training objective

    L = L_S + L_T + lambda_D L_D + lambda_R L_R                          (Eq. 7)

computed on degraded images x_t (Eq. 1, :mod:`mmseg_dida.models.utils.degradation`):
L_D (Eq. 6, :class:`~mmseg_dida.models.losses.DICLoss`) is the segmentation loss of
h((g + g')(x_t)) on degraded source images (labels) and degraded target images
(the EMA teacher's pseudo labels weighted by q^T); L_R (Eq. 5,
:class:`~mmseg_dida.models.decode_heads.ReconHead`) is the reconstruction of eps.
g + g' is the :class:`~mmseg_dida.models.backbones.DiffusionEncoder` that this plug-in
puts around the student's backbone in :meth:`DiDA.attach`; at deployment it is
replaced by g again (:func:`deploy_segmentor`), so the deployed model is exactly the
baseline's architecture.
"""
import copy
from typing import Dict, Iterator, Optional, Sequence

import torch
from mmengine.config import Config, ConfigDict
from mmseg.registry import MODELS
from torch import Tensor, nn

from ..backbones.diffusion_encoder import DiffusionEncoder
from .plugin import BaseUDAPlugin, UDAStepContext, sum_loss_groups

__all__ = ['DiDA', 'deploy_segmentor', 'deploy_config', 'strip_diffusion_encoders']

RECON_ARCHS = ('full', 'linear', None)
# memory_saving preset -> (one pass + backward per domain, checkpoint g', checkpoint g)
MEMORY_SAVING = {
    'none': (False, False, False),
    'per_domain': (True, False, False),
    'g_prime': (True, True, False),
    'encoders': (True, True, True),
}


@MODELS.register_module()
class DiDA(BaseUDAPlugin):
    """The DiDA plug-in.

    Args:
        degradation: Config of :class:`Degradation` (paper: noise, sigmoid schedule,
            T = 100; t and eps shared by source image i and target image i).
        mode: DiffusionEncoder mode: 'full' (paper, separate g'), 'g_time' (time FiLM
            on g, no g') or 'none' (no time conditioning: the "L_D only" ablation).
        recon: Reconstruction head h': 'full' (paper), 'linear' (a 1x1 probe on the
            finest level, the "+ L_R" ablation row) or None (no L_R).
        lambda_d: lambda_D (paper: 0.5).
        lambda_r: lambda_R (paper: 5 for MiT/DAFormer, 1 for DeepLabV2).
        recon_channels: Width of h'.
        embed_dim, time_dim: Time embedding sizes (16, 256).
        init_g_prime: 'backbone' (g' starts from g's weights) or 'scratch'.
        memory_saving: How the degraded pass bounds its memory; the losses and
            gradients are the same in every mode (up to float rounding; BatchNorm
            statistics then come from per-domain batches, as with
            ``batch_domains=False``).
            'none' (default): one batched degraded pass over source and target, one
            backward. 'per_domain': the source pass and the target pass are two loss
            groups, each back-propagated before the next is computed, so the
            activations of one domain are held at a time (no recomputation).
            'g_prime': 'per_domain' plus activation checkpointing of g' (its forward
            is recomputed in backward: one more g' forward per step). 'encoders':
            'g_prime' plus checkpointing of g in the degraded passes (the clean path
            is never checkpointed). Measured (tools/benchmarks/RESULTS.md): memory
            'none' > 'per_domain' > 'g_prime' > 'encoders', time the other way.
        batch_domains: One degraded forward over source and target together (default)
            instead of one per domain. Identical maths for LayerNorm networks; with
            BatchNorm in training mode the statistics are then those of the joint
            degraded batch. The per-domain memory savings imply per-domain passes.
    """

    def __init__(self, degradation: Optional[dict] = None, mode: str = 'full',
                 recon: Optional[str] = 'full', lambda_d: float = 0.5,
                 lambda_r: float = 5.0, recon_channels: int = 64, embed_dim: int = 16,
                 time_dim: int = 256, init_g_prime: str = 'backbone',
                 memory_saving: str = 'none', batch_domains: bool = True,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if recon not in RECON_ARCHS:
            raise ValueError(f'DiDA: recon must be one of {RECON_ARCHS}, '
                             f'got {recon!r}')
        if lambda_r < 0 or lambda_d < 0:
            raise ValueError(f'DiDA: lambda_d and lambda_r must be >= 0, got '
                             f'{lambda_d} and {lambda_r}')
        if memory_saving not in MEMORY_SAVING:
            raise ValueError(f'DiDA: memory_saving must be one of '
                             f'{list(MEMORY_SAVING)}, got {memory_saving!r}')
        self.memory_saving = memory_saving
        self.per_domain_backward, cp_g_prime, cp_g = MEMORY_SAVING[memory_saving]
        self.degradation = MODELS.build(degradation or dict(type='Degradation'))
        self.dic_loss = MODELS.build(dict(type='DICLoss', loss_weight=lambda_d))
        self.encoder_cfg = dict(mode=mode, embed_dim=embed_dim, time_dim=time_dim,
                                init_g_prime=init_g_prime,
                                with_cp=cp_g_prime, cp_backbone=cp_g)
        # Validate the encoder options now rather than at attach time.
        if mode not in ('full', 'g_time', 'none'):
            raise ValueError(f"DiDA: mode must be 'full', 'g_time' or 'none', "
                             f'got {mode!r}')
        self.recon = recon if lambda_r > 0 else None
        self.lambda_r = lambda_r
        self.recon_channels = recon_channels
        self.batch_domains = batch_domains
        self.recon_head: Optional[nn.Module] = None

    # ------------------------------------------------------------------- attach
    def attach(self, uda_model: nn.Module) -> None:
        """Wrap the student's backbone g into a DiffusionEncoder (g + g' + FiLM) and
        build h' for its feature levels. Called before the teacher is copied."""
        student = uda_model.student
        if isinstance(student.backbone, DiffusionEncoder):
            raise RuntimeError('DiDA.attach: the student backbone is already a '
                               'DiffusionEncoder (two DiDA plug-ins?)')
        encoder = DiffusionEncoder(student.backbone, **self.encoder_cfg)
        student.backbone = encoder
        if self.recon is not None:
            channels = (encoder.level_channels or
                        DiffusionEncoder.infer_level_channels(encoder.backbone))
            if getattr(student, 'with_neck', False):
                raise NotImplementedError('DiDA: segmentors with a neck are not '
                                          'supported by the reconstruction head yet')
            self.recon_head = MODELS.build(dict(
                type='ReconHead', in_channels=channels,
                in_index=list(range(len(channels))), channels=self.recon_channels,
                out_channels=3, arch=self.recon,
                embed_dim=self.encoder_cfg['embed_dim'],
                time_dim=self.encoder_cfg['time_dim']))

    def strip_teacher(self, model: nn.Module) -> nn.Module:
        """The teacher only labels clean target images, for which the
        DiffusionEncoder is exactly g: it keeps g, not g', the FiLMs or h'."""
        return strip_diffusion_encoders(model)

    # ------------------------------------------------------------------- losses
    @staticmethod
    def _stack_labels(samples: Sequence) -> Tensor:
        return torch.stack([s.gt_sem_seg.data.reshape(s.gt_sem_seg.data.shape[-2:])
                            for s in samples]).long()

    def _degraded_pass(self, student: nn.Module, x_t: Tensor, t: Tensor,
                       target: Tensor):
        """h((g + g')(x_t)) and, with h', the unweighted L_R of this chunk."""
        with student.backbone.timestep(t):
            feats = student.extract_feat(x_t)
        seg_logits = student.decode_head(feats)
        if self.recon_head is None:
            return seg_logits, None
        return seg_logits, self.recon_head.loss(feats, t, target)

    def loss_groups(self, ctx: UDAStepContext) -> Iterator[Dict[str, Tensor]]:
        """loss_dic_src, loss_dic_tgt (x lambda_D), loss_recon (x lambda_R) and the
        degradation statistics dida_t, dida_abar (logged, not back-propagated): one
        group, or with per-domain memory saving a source group and a target group
        (loss_recon then split between them; the log shows the sum)."""
        student = ctx.student
        if not isinstance(student.backbone, DiffusionEncoder):
            raise RuntimeError('DiDA.loss_groups: the student backbone is not a '
                               'DiffusionEncoder; was DiDA.attach called?')
        src = ctx.src_inputs
        n = src.shape[0]
        labels = self._stack_labels(ctx.src_data_samples).to(src.device)
        use_tgt = ctx.pseudo_label is not None
        if use_tgt:
            deg = self.degradation.degrade_pair(src, ctx.tgt_inputs)
            labels = torch.cat([labels, ctx.pseudo_label.long()])
        else:  # source-only run: degraded source images only
            t = self.degradation.sample_t(n, src.device)
            x_t, target = self.degradation(src, t)
            deg = dict(x_t=x_t, target=target, t=t)
        x_t, t, target = deg['x_t'], deg['t'], deg['target']
        stats = dict(dida_t=t.float().mean().detach(),
                     dida_abar=self.degradation.abar[t].mean().detach())
        tgt_weight = ctx.pseudo_weight if use_tgt else None
        per_domain = use_tgt and (self.per_domain_backward or not self.batch_domains)
        if not per_domain:
            losses = self._chunk_losses(student, x_t, t, target, labels, n, tgt_weight)
            yield {**losses, **stats}
            return
        # Per domain: [0, n) degraded source, [n, 2n) degraded target. L_R is the
        # mean over both halves, i.e. each half contributes half of its own L_R.
        halves = [self._chunk_losses(student, x_t[:n], t[:n], target[:n], labels[:n],
                                     n, None, recon_scale=0.5)]
        if self.per_domain_backward:
            yield halves.pop()
        halves.append(self._chunk_losses(student, x_t[n:], t[n:], target[n:],
                                         labels[n:], 0, tgt_weight, recon_scale=0.5))
        yield {**sum_loss_groups(halves), **stats}

    def _chunk_losses(self, student: nn.Module, x_t: Tensor, t: Tensor,
                      target: Tensor, labels: Tensor, num_src: int,
                      tgt_weight: Optional[Tensor], recon_scale: float = 1.0
                      ) -> Dict[str, Tensor]:
        seg_logits, loss_r = self._degraded_pass(student, x_t, t, target)
        losses = self.dic_loss(seg_logits, labels, num_src=num_src,
                               tgt_weight=tgt_weight)
        if loss_r is not None:
            losses['loss_recon'] = self.lambda_r * recon_scale * loss_r
        return losses

    def losses(self, ctx: UDAStepContext) -> Dict[str, Tensor]:
        """All of :meth:`loss_groups` in one dict (a key in several groups summed).
        Computing them at once keeps every group's graph alive: the training step
        uses :meth:`loss_groups`."""
        return sum_loss_groups(self.loss_groups(ctx))


# ----------------------------------------------------------------------- deploy
def strip_diffusion_encoders(module: nn.Module) -> nn.Module:
    """Replace, in place, every DiffusionEncoder inside ``module`` by its g (the
    wrapper's g', time MLP and FiLMs are dropped); returns ``module`` (or g when
    ``module`` is itself a DiffusionEncoder)."""
    if isinstance(module, DiffusionEncoder):
        return module.deploy()
    for name, child in module.named_children():
        if isinstance(child, DiffusionEncoder):
            setattr(module, name, child.deploy())
        else:
            strip_diffusion_encoders(child)
    return module


def deploy_segmentor(model: nn.Module) -> nn.Module:
    """The deployable segmentor of a training model: the student of a UDA model (or
    the segmentor itself), with every DiffusionEncoder replaced by its g. g', the
    time MLP and FiLMs, h', the teacher and the ImageNet model are left behind.
    Returns a deep copy; ``model`` is not changed."""
    segmentor = getattr(model, 'student', model)
    return strip_diffusion_encoders(copy.deepcopy(segmentor))


def deploy_config(cfg: Config) -> Config:
    """A plain mmseg segmentor config from a UDA training config: ``model`` becomes
    the UDA model's ``segmentor`` (keeping the data preprocessor), DiDA's hook is
    dropped; data, evaluation and runtime settings are kept."""
    cfg = copy.deepcopy(cfg)
    model = cfg.model
    if 'segmentor' in model:
        seg = ConfigDict(copy.deepcopy(model.segmentor))
        if 'data_preprocessor' not in seg and 'data_preprocessor' in model:
            seg.data_preprocessor = model.data_preprocessor
        cfg.model = seg
    hooks = cfg.get('custom_hooks', None) or []
    cfg.custom_hooks = [h for h in hooks if h.get('type') != 'DiDAHook']
    return cfg

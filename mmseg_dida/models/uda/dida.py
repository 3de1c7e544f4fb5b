"""DiDA as a plug-in of a self-training UDA method (DAFormer, HRDA, MIC).

DiDA (NeurIPS 2025, arXiv 2412.10339) adds to the self-training objective

    L = L_S + L_T + lambda_D L_D + lambda_R L_R                          (Eq. 7)

computed on degraded images x_t (Eq. 1, :mod:`mmseg_dida.models.utils.degradation`):
L_D (Eq. 6, :class:`~mmseg_dida.models.losses.DICLoss`) is the segmentation loss of
h((g + g')(x_t)) on degraded source images (labels) and degraded target images
(the EMA teacher's pseudo labels weighted by q^T), computed with the student's own
supervised loss (its contract :class:`~mmseg_dida.models.segmentors.UDASegmentor`:
DAFormer's cross-entropy, HRDA's weighted fused + detail-crop losses through its
multi-resolution path); L_R (Eq. 5,
:class:`~mmseg_dida.models.decode_heads.ReconHead`) is the reconstruction of eps.
g + g' is the :class:`~mmseg_dida.models.backbones.DiffusionEncoder` that this plug-in
puts around the student's backbone in :meth:`DiDA.attach`; at deployment it is
replaced by g again (:func:`mmseg_dida.deploy.deploy_segmentor`), so the deployed
model is exactly the baseline's architecture.
"""
from contextlib import contextmanager, nullcontext
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from mmseg.registry import MODELS
from torch import Tensor, nn

from ...deploy import replace_wrappers
from ..backbones.diffusion_encoder import COMPENSATION_INITS, DiffusionEncoder
from ..decode_heads.recon_head import PRED_INITS
from ..decode_heads.time_seg_path import TimeConditionedSegPath
from ..segmentors.uda_segmentor import (
    EncoderDecoderUDA,
    TrainForward,
    as_uda_segmentor,
    crop_box,
    sum_losses,
)
from ..utils.degradation import ViewNoise, ViewNoiseTransform
from ..utils.feature_distance import masked_feat_dist
from ..utils.memory_saving import (
    AUTO,
    DEFAULT_MEMORY_SAVING,
    check_memory_saving,
    initial_memory_saving,
    memory_saving_mode,
    next_memory_saving,
)
from ..utils.norm_buffers import has_batch_norm, per_part_batch_norm
from .plugin import BaseUDAPlugin, UDAStepContext

__all__ = ['DiDA']

RECON_ARCHS = ('full', 'linear', None)
SEG_PATHS = ('shared', 'time_conditioned')
LD_T_WEIGHTS = ('uniform', 'abar')
FD_REFERENCES = ('imnet', 'clean')
DEGRADED_NORMS = ('joint', 'per_domain')
RECON_TARGETS = ('pooled', 'unit_variance')


@MODELS.register_module()
class DiDA(BaseUDAPlugin):
    """The DiDA plug-in.

    The paper's method is the default of every argument; the arguments marked
    *variant* switch on measured alternatives that are not the paper's maths
    (docs/RESULTS.md has their numbers).

    Args:
        degradation: Config of :class:`Degradation` (paper: noise drawn per pixel,
            sigmoid schedule, T = 100; t and eps shared by source image i and target
            image i).
        mode: DiffusionEncoder mode: 'full' (paper, separate g'), 'g_time' (time FiLM
            on g, no g') or 'none' (no time conditioning: the "L_D only" ablation).
        recon: Reconstruction head h': 'full' (paper), 'linear' (a 1x1 probe on the
            finest level, the "+ L_R" ablation row) or None (no h', no L_R).
        lambda_d: lambda_D (paper: 0.5), the DIC loss's ``loss_weight``.
        lambda_r: lambda_R (paper: 5 for MiT/DAFormer, 1 for DeepLabV2), h''s
            ``loss_weight``; must be > 0 when ``recon`` is set.
        recon_channels: Width of h'.
        embed_dim, time_dim: Time embedding sizes (16, 256).
        compensation_init: 'default' (paper code: FiLM MLPs with torch's init, so
            z_hat ~ g'(x_t) ~ g(x_t) at step 0) or 'zero' (z_hat = 0 at step 0; see
            :class:`DiffusionEncoder`).
        memory_saving: How the degraded passes bound their memory
            (:mod:`mmseg_dida.models.utils.memory_saving`; the losses and gradients
            are the same in every mode). 'none' (default): one batched degraded pass
            over source and target, one backward. 'per_domain': the source pass and
            the target pass are two loss groups, each back-propagated before the
            next (with BatchNorm in training mode each pass has its domain's batch
            statistics). 'g_prime': 'per_domain' plus activation checkpointing of g'.
            'encoders': 'g_prime' plus checkpointing of g in the degraded passes.
            'auto': start with 'none' and, when a step runs out of GPU memory,
            replay it with the next mode (:meth:`memory_fallback`): the run settles
            at the fastest mode that fits the card.
        update_norm_stats: False (default): the degraded passes use batch statistics
            but leave the student's running statistics (what inference and the
            exported model use) unchanged; the host restores them around this
            plug-in (``preserves_norm_buffers``). True reproduces the earlier,
            harmful behaviour (running statistics absorb degraded, fused features)
            for measurements.
        ld_t_weight: *variant*. Weight of each degraded image's L_D terms by its t:
            'uniform' (paper) or 'abar' (abar_t: 1 for clean, 0 for pure noise).
        ld_max_t: *variant*. Images with t >= ``ld_max_t`` do not enter L_D (they
            still enter L_R); None (paper): every t.
        ld_t_weight_on: Which images ``ld_t_weight`` and ``ld_max_t`` apply to:
            'both' (default) or *variant* 'target' (only L_D's target term, whose
            pseudo labels come from the clean image although the noise erases the
            target's class signal at lower t than the source's).
        seg_path: 'shared' (paper, Eq. 6: h segments degraded images, with the
            student's own loss) or *variant* 'time_conditioned' (the authors' earlier
            code: h's level embeddings, a time FiLM per level, a fusion of its own;
            see :class:`TimeConditionedSegPath`; single-scale segmentors only).
        degraded_fd_weight: *variant*. Weight of a feature distance on the degraded
            source pass (last backbone level); 0 (paper): none.
        degraded_fd_reference: What the degraded source features are pulled to:
            'imnet' (the authors' earlier code: the host's ImageNet feature distance
            against the frozen ImageNet model's features of the clean image, times
            ``degraded_fd_weight``; needs the host's feature distance) or 'clean'
            (the student's own features of the clean image, no gradient; mean L2
            distance over all pixels times ``degraded_fd_weight``).
        ld_scale_weights: *variant*, HRDA students only. The weights of L_D's
            fused, detail-crop and LR-context losses (keys among 'fused', 'hr',
            'lr'), e.g. ``dict(lr=1.0)``: L_D on the LR context alone. None (paper):
            the student's own loss (HRDA: fused 0.9, detail 0.1).
        noise_per_view: *variant*. Degrade each view of the student at its own
            resolution (:class:`~mmseg_dida.models.utils.degradation.ViewNoise`:
            HRDA's LR context and detail crop each get unit-variance eps at the same
            t) instead of degrading the full image before the student scales and
            crops it (paper; then the LR context keeps about a quarter of the noise
            variance). Identical to the paper's maths for single-scale students.
        degraded_frozen_modules: *variant*. Names of student submodules (e.g.
            'decode_head.scale_attention', HRDA's scale attention) that receive no
            gradient from DiDA's losses: they learn from the clean passes only.
            Empty (paper): none.
        g_block_time: *variant* (a reading of the paper's ablation, whose full row
            ticks "g_time"). True: g itself reads t, through a time FiLM inside
            every Mix-FFN of g after its depthwise convolution (the authors' earlier
            code), in degraded passes only; with ``mode='full'`` g' is kept as well,
            with ``mode='none'`` it is the only time conditioning. False (default):
            g never reads t.
        degraded_norm: How BatchNorm layers of the student normalise a degraded pass
            over both domains: 'joint' (default): one batch of degraded source and
            target images; 'per_domain' (the authors' earlier code, which ran the
            domains separately): each domain's images with their own batch
            statistics, in one pass. The memory modes that split the domains into
            two passes ('per_domain', 'g_prime', 'encoders', 'auto') can only give
            'per_domain' statistics, so a student with BatchNorm needs
            ``degraded_norm='per_domain'`` with them: then every mode computes the
            same losses and gradients.
        recon_init: h''s prediction layer: 'default' (torch's init) or *variant*
            'zero' (h' predicts 0 at first: no burst of L_R gradient into the
            encoders at the start).
        recon_target: L_R's target at h''s resolution: 'pooled' (default: eps
            area-pooled, std 1/4 at stride 4) or *variant* 'unit_variance' (the
            pooled eps rescaled to unit variance, as the authors' earlier code's h'
            predicted unit-variance noise); needs per-pixel noise
            (``noise_downsample=1``).
    """

    def __init__(self, degradation: Optional[dict] = None, mode: str = 'full',
                 recon: Optional[str] = 'full', lambda_d: float = 0.5,
                 lambda_r: float = 5.0, recon_channels: int = 64, embed_dim: int = 16,
                 time_dim: int = 256, compensation_init: str = 'default',
                 memory_saving: str = DEFAULT_MEMORY_SAVING,
                 update_norm_stats: bool = False,
                 ld_t_weight: str = 'uniform', ld_max_t: Optional[int] = None,
                 seg_path: str = 'shared', degraded_fd_weight: float = 0.0,
                 degraded_fd_reference: str = 'imnet',
                 ld_scale_weights: Optional[Dict[str, float]] = None,
                 degraded_frozen_modules: Sequence[str] = (),
                 noise_per_view: bool = False,
                 g_block_time: bool = False,
                 degraded_norm: str = 'joint',
                 recon_init: str = 'default',
                 recon_target: str = 'pooled',
                 ld_t_weight_on: str = 'both',
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        _check_choice('recon', recon, RECON_ARCHS)
        check_memory_saving(memory_saving, 'DiDA')
        _check_choice('mode', mode, ('full', 'g_time', 'none'))
        _check_choice('seg_path', seg_path, SEG_PATHS)
        _check_choice('ld_t_weight', ld_t_weight, LD_T_WEIGHTS)
        _check_choice('degraded_fd_reference', degraded_fd_reference, FD_REFERENCES)
        _check_choice('compensation_init', compensation_init, COMPENSATION_INITS)
        _check_choice('degraded_norm', degraded_norm, DEGRADED_NORMS)
        _check_choice('recon_init', recon_init, PRED_INITS)
        _check_choice('recon_target', recon_target, RECON_TARGETS)
        _check_choice('ld_t_weight_on', ld_t_weight_on, ('both', 'target'))
        if recon_target != 'pooled' and recon is None:
            raise ValueError(f'DiDA: recon_target={recon_target!r} needs h\' '
                             '(recon is None)')
        if compensation_init == 'zero' and mode != 'full':
            raise ValueError("DiDA: compensation_init='zero' needs mode='full', "
                             f'got mode={mode!r}')
        for name, value in (('lambda_d', lambda_d), ('lambda_r', lambda_r),
                            ('degraded_fd_weight', degraded_fd_weight)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or value < 0:
                raise ValueError(f'DiDA: {name} must be a number >= 0, got {value!r}')
        if recon is not None and lambda_r == 0:
            raise ValueError(f"DiDA: lambda_r=0 with recon={recon!r}; set recon=None "
                             "to train without h' and L_R")
        if ld_max_t is not None and (not isinstance(ld_max_t, int) or ld_max_t < 1):
            raise ValueError(f'DiDA: ld_max_t must be None or an int >= 1, '
                             f'got {ld_max_t!r}')
        if ld_scale_weights is not None and (
                not isinstance(ld_scale_weights, dict) or not ld_scale_weights
                or set(ld_scale_weights) - {'fused', 'hr', 'lr'}
                or any(not isinstance(v, (int, float)) or v < 0
                       for v in ld_scale_weights.values())):
            raise ValueError("DiDA: ld_scale_weights must be None or a dict of some of "
                             "'fused', 'hr', 'lr' to numbers >= 0, got "
                             f'{ld_scale_weights!r}')
        if isinstance(degraded_frozen_modules, str) or not all(
                isinstance(m, str) for m in degraded_frozen_modules):
            raise ValueError('DiDA: degraded_frozen_modules must be a list of module '
                             f'names, got {degraded_frozen_modules!r}')
        self.memory_saving = memory_saving  # as configured (a mode or 'auto')
        self.active_memory_saving = initial_memory_saving(memory_saving)
        self.frozen_in_backbone = any(m == 'backbone' or m.startswith('backbone.')
                                      for m in degraded_frozen_modules)
        if not self._fits_frozen_modules(self.active_memory_saving):
            raise ValueError('DiDA: degraded_frozen_modules inside the backbone cannot '
                             f'be combined with memory_saving={memory_saving!r} (its '
                             'checkpointed passes are recomputed outside the scope)')
        self.degradation = MODELS.build(degradation or dict(type='Degradation'))
        self.dic_loss = MODELS.build(dict(type='DICLoss', loss_weight=lambda_d))
        if ld_t_weight_on != 'both' and ld_t_weight == 'uniform' and ld_max_t is None:
            raise ValueError(f'DiDA: ld_t_weight_on={ld_t_weight_on!r} chooses the images '
                             "that ld_t_weight or ld_max_t applies to; neither is set "
                             "(ld_t_weight='uniform', ld_max_t=None)")
        if recon_init != 'default' and recon is None:
            raise ValueError(f"DiDA: recon_init={recon_init!r} initialises h', which "
                             'recon=None leaves out')
        if recon_target == 'unit_variance' and (
                self.degradation.kind != 'noise'
                or self.degradation.noise_downsample != 1):
            raise ValueError("DiDA: recon_target='unit_variance' rescales noise drawn "
                             'per pixel (degradation kind noise, noise_downsample=1)')
        self.encoder_cfg = dict(mode=mode, embed_dim=embed_dim, time_dim=time_dim,
                                compensation_init=compensation_init,
                                memory_saving=self.active_memory_saving,
                                block_time=bool(g_block_time))
        self.degraded_norm = degraded_norm
        self.ld_t_weight_on = ld_t_weight_on
        self.recon_init = recon_init
        self.recon_target = recon_target
        self.recon = recon
        self.lambda_r = lambda_r
        self.recon_channels = recon_channels
        self.preserves_norm_buffers = not update_norm_stats
        self.ld_t_weight = ld_t_weight
        self.ld_max_t = ld_max_t
        self.seg_path = seg_path
        self.degraded_fd_weight = float(degraded_fd_weight)
        self.degraded_fd_reference = degraded_fd_reference
        self.ld_scale_weights = (None if ld_scale_weights is None else
                                 dict(ld_scale_weights))
        self.degraded_frozen_modules = tuple(degraded_frozen_modules)
        if noise_per_view and self.degradation.kind != 'noise':
            raise ValueError("DiDA: noise_per_view needs degradation kind='noise', got "
                             f'{self.degradation.kind!r}')
        self.noise_per_view = bool(noise_per_view)
        self.recon_head: Optional[nn.Module] = None
        self.seg_path_module: Optional[nn.Module] = None

    # ------------------------------------------------------------ memory saving
    def _fits_frozen_modules(self, mode: str) -> bool:
        """Checkpointed passes are recomputed outside ``degraded_frozen_modules``'s
        scope, so a mode that checkpoints cannot serve frozen backbone modules."""
        saving = memory_saving_mode(mode, 'DiDA')
        return not (self.frozen_in_backbone and
                    (saving.checkpoint_g_prime or saving.checkpoint_g))

    def memory_fallback(self) -> Optional[str]:
        """The mode an out-of-memory step is replayed with: with ``memory_saving=
        'auto'`` the next mode of :data:`~mmseg_dida.models.utils.memory_saving.
        MEMORY_SAVING` after the one in use; None otherwise, and after the last."""
        if self.memory_saving != AUTO:
            return None
        nxt = next_memory_saving(self.active_memory_saving)
        return nxt if nxt is not None and self._fits_frozen_modules(nxt) else None

    def use_memory_fallback(self, student: nn.Module) -> str:
        """Switch to :meth:`memory_fallback` (the degraded passes' loss groups and
        the student's DiffusionEncoder from the next pass on); returns what changed."""
        nxt = self.memory_fallback()
        if nxt is None:
            raise RuntimeError(f'DiDA: no memory saving mode after '
                               f'{self.active_memory_saving!r}')
        old, self.active_memory_saving = self.active_memory_saving, nxt
        if isinstance(student.backbone, DiffusionEncoder):
            student.backbone.set_memory_saving(nxt)
        return f'DiDA memory_saving {old!r} -> {nxt!r}'

    # ------------------------------------------------------------------- attach
    def attach(self, uda_model: nn.Module) -> None:
        """Wrap the student's backbone g into a DiffusionEncoder (g + g' + FiLM) and
        build h' (and the time-conditioned segmentation path when asked) for its
        feature levels. Called before the teacher is copied."""
        student = uda_model.student
        seg = as_uda_segmentor(student)
        if self.seg_path == 'time_conditioned' and not isinstance(
                seg, EncoderDecoderUDA):
            raise NotImplementedError(
                "DiDA: seg_path='time_conditioned' is implemented for single-scale "
                f'segmentors (mmseg EncoderDecoder), not {type(student).__name__}')
        if isinstance(student.backbone, DiffusionEncoder):
            raise RuntimeError('DiDA.attach: the student backbone is already a '
                               'DiffusionEncoder (two DiDA plug-ins?)')
        if self.ld_scale_weights is not None and not hasattr(
                student.decode_head, 'scale_loss_weights'):
            raise ValueError('DiDA: ld_scale_weights needs a multi-scale (HRDA) '
                             f'student, got the head {type(student.decode_head).__name__}')
        modules = dict(student.named_modules())
        for name in self.degraded_frozen_modules:
            if name not in modules:
                raise ValueError(f'DiDA: degraded_frozen_modules: the student has no '
                                 f'module {name!r}')
        seg_path_module = None
        if self.seg_path == 'time_conditioned':
            seg_path_module = TimeConditionedSegPath(
                student.decode_head, self.encoder_cfg['embed_dim'],
                self.encoder_cfg['time_dim'])
        if (self.degraded_norm == 'joint'
                and any(has_batch_norm(m) for m in (student, seg_path_module)
                        if m is not None)
                and (self.memory_saving == AUTO or memory_saving_mode(
                    self.memory_saving, 'DiDA').per_domain)):
            raise ValueError(
                f'DiDA: memory_saving={self.memory_saving!r} runs the degraded source '
                'and target images as separate passes, so the BatchNorm layers of the '
                "degraded path cannot normalise them jointly (degraded_norm='joint'); "
                "set degraded_norm='per_domain' (the same losses in every mode) or "
                "memory_saving='none'")
        encoder = DiffusionEncoder(student.backbone, **self.encoder_cfg)
        student.backbone = encoder
        self.seg_path_module = seg_path_module
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
                time_dim=self.encoder_cfg['time_dim'], loss_weight=self.lambda_r,
                pred_init=self.recon_init,
                target_scale=('unit_variance' if self.recon_target == 'unit_variance'
                              else 'none')))

    def strip_teacher(self, model: nn.Module) -> nn.Module:
        """The teacher only labels clean target images, for which the
        DiffusionEncoder is exactly g: it keeps g, not g', the FiLMs or h'."""
        return replace_wrappers(model)

    # ------------------------------------------------------------ degraded path
    def degraded_forward(self, student: nn.Module, x_t: Tensor, t: Tensor,
                         view_transform: Optional[ViewNoiseTransform] = None
                         ) -> TrainForward:
        """The degraded pass: the student's training forward of ``x_t`` with the
        fused features (g + g')(x_t) at timesteps ``t`` (every backbone pass of the
        segmentor, e.g. HRDA's context and detail crop, at the same ``t``); with the
        time-conditioned path its logits are that path's. With ``view_transform``
        (``noise_per_view``) ``x_t`` is the clean batch, degraded per view."""
        if self.seg_path_module is not None:
            if view_transform is not None:
                x_t = view_transform(x_t, 'input')
            with student.backbone.timestep(t):
                feats = student.extract_feat(x_t)
            logits = self.seg_path_module(student.decode_head, feats, t)
            return TrainForward(logits=logits, feats=feats, pixel_feats=list(feats))
        with student.backbone.timestep(t):
            return as_uda_segmentor(student).uda_forward(x_t, view_transform)

    def segment_degraded(self, student: nn.Module, x_t: Tensor, t: Tensor
                         ) -> Tuple[List[Tensor], Tensor]:
        """The degraded path: fused features (g + g')(x_t) at timesteps ``t`` (of
        the view at the input's resolution: HRDA's detail crop) and the logits of
        the degraded segmentation (h's, or the time-conditioned path's; HRDA: the
        fused ones), at h's output resolution."""
        out = self.degraded_forward(student, x_t, t)
        return out.pixel_feats, out.seg_logits

    # ------------------------------------------------------------------- losses
    def loss_groups(self, ctx: UDAStepContext) -> Iterator[Dict[str, Tensor]]:
        """loss_dic_src, loss_dic_tgt (x lambda_D), loss_recon (x lambda_R),
        loss_dic_fd with a degraded feature distance, and the degradation
        statistics dida_t, dida_abar (logged, not back-propagated): one group, or
        with per-domain memory saving a source group and a target group
        (loss_recon then split between them; the log shows the sum)."""
        student = ctx.student
        if not isinstance(student.backbone, DiffusionEncoder):
            raise RuntimeError('DiDA.loss_groups: the student backbone is not a '
                               'DiffusionEncoder; was DiDA.attach called?')
        src = ctx.src_inputs
        n = src.shape[0]
        labels = ctx.src_labels
        labels = labels.reshape(n, *labels.shape[-2:]).long().to(src.device)
        use_tgt = ctx.pseudo_label is not None
        views = None
        if self.noise_per_view:  # clean images in, each view degraded in the forward
            x_t = torch.cat([src, ctx.tgt_inputs]) if use_tgt else src
            t = (self.degradation.sample_pair_t(n, src.device) if use_tgt else
                 self.degradation.sample_t(n, src.device))
            views, target = self.degradation.views(t, n if use_tgt else None), None
            if use_tgt:
                labels = torch.cat([labels, ctx.pseudo_label.long()])
        elif use_tgt:
            deg = self.degradation.degrade_pair(src, ctx.tgt_inputs)
            labels = torch.cat([labels, ctx.pseudo_label.long()])
            x_t, t, target = deg['x_t'], deg['t'], deg['target']
        else:  # source-only run: degraded source images only
            t = self.degradation.sample_t(n, src.device)
            x_t, target = self.degradation(src, t)
        stats = dict(dida_t=t.float().mean().detach(),
                     dida_abar=self.degradation.abar[t].mean().detach())
        tgt_weight = self.target_weight(ctx) if use_tgt else None
        if not (use_tgt and
                memory_saving_mode(self.active_memory_saving, 'DiDA').per_domain):
            losses = self._chunk_losses(ctx, x_t, t, target, labels, n, tgt_weight,
                                        **_views(views, slice(None)))
            yield {**losses, **stats}
            return
        # Per domain: [0, n) degraded source, [n, 2n) degraded target. L_R is the
        # mean over both halves, i.e. each half contributes half of its own L_R.
        src_half, tgt_half = slice(0, n), slice(n, 2 * n)
        yield self._chunk_losses(ctx, x_t[src_half], t[src_half],
                                 _part(target, src_half), labels[src_half], n, None,
                                 recon_scale=0.5, **_views(views, src_half))
        yield {**self._chunk_losses(ctx, x_t[tgt_half], t[tgt_half],
                                    _part(target, tgt_half), labels[tgt_half], 0,
                                    tgt_weight, recon_scale=0.5,
                                    **_views(views, tgt_half)), **stats}

    @staticmethod
    def target_weight(ctx: UDAStepContext) -> Tensor:
        """q^T of L_D's target term: the host's masked pseudo weight (its ignored
        top/bottom rows and the samples' ``valid_pseudo_mask`` at 0, as in L_T), or
        the plain one from a host that masks nothing."""
        if ctx.pseudo_weight_masked is not None:
            return ctx.pseudo_weight_masked
        return ctx.pseudo_weight

    def ld_image_weight(self, t: Tensor, num_src: int = 0) -> Optional[Tensor]:
        """Per-image weight of L_D by t (None: 1, the paper), for the images ``t``
        of which the first ``num_src`` are source; with ``ld_t_weight_on='target'``
        the source images keep weight 1."""
        weight = None
        if self.ld_t_weight == 'abar':
            weight = self.degradation.abar[t].float()
        if self.ld_max_t is not None:
            keep = (t < self.ld_max_t).float()
            weight = keep if weight is None else weight * keep
        if weight is not None and self.ld_t_weight_on == 'target' and num_src:
            weight = torch.cat([torch.ones_like(weight[:num_src]), weight[num_src:]])
        return weight

    def _chunk_losses(self, ctx: UDAStepContext, x_t: Tensor, t: Tensor,
                      target: Tensor, labels: Tensor, num_src: int,
                      tgt_weight: Optional[Tensor], recon_scale: float = 1.0,
                      views: Optional[ViewNoise] = None,
                      index: slice = slice(None)) -> Dict[str, Tensor]:
        """The losses of degraded images [source (num_src) ; target]; with
        ``views`` (``noise_per_view``) ``x_t`` is clean, the images ``index`` of the
        views' batch, and ``target`` None (the eps of the view h' reads is)."""
        transform = None if views is None else views.for_images(index)
        both = 0 < num_src < x_t.shape[0]
        # every BatchNorm of the degraded path: the student's and, with
        # seg_path='time_conditioned', that path's own fusion
        path = [m for m in (ctx.student, self.seg_path_module) if m is not None]
        norm_scope = (per_part_batch_norm(path, (num_src, x_t.shape[0] - num_src))
                      if self.degraded_norm == 'per_domain' and both else nullcontext())
        with frozen_parameters(ctx.student, self.degraded_frozen_modules), norm_scope:
            out = self.degraded_forward(ctx.student, x_t, t, transform)
        if self.seg_path_module is not None:
            seg_loss = out.logits
        else:
            seg = as_uda_segmentor(ctx.student)
            scale = ({} if self.ld_scale_weights is None else
                     dict(scale_weights=self.ld_scale_weights))

            def seg_loss(index: slice, part_labels: Tensor,
                         weight: Optional[Tensor]) -> Tensor:
                return sum_losses(seg.uda_loss(out.select(index), part_labels, weight,
                                               **scale))
        losses = self.dic_loss(seg_loss, labels, num_src=num_src,
                               tgt_weight=tgt_weight,
                               image_weight=self.ld_image_weight(t, num_src))
        if self.recon_head is not None and transform is not None:
            # noise per view: the eps added to the view at the input's resolution
            # (the whole image, HRDA's detail crop) is what h' reads.
            losses['loss_recon'] = recon_scale * self.recon_head.loss(
                out.pixel_feats, t, transform.noise['input'])
        elif self.recon_head is not None:
            # The target is the eps added to x_t at x_t's resolution (for every
            # noise_downsample), so the box of the view h' reads (HRDA's detail
            # crop, in input pixels) cuts the eps of exactly that crop's pixels.
            if target.shape[-2:] != x_t.shape[-2:]:
                raise ValueError(
                    f'DiDA: the reconstruction target is {tuple(target.shape[-2:])}, '
                    f'the degraded images {tuple(x_t.shape[-2:])}; the target must '
                    'be at the images\' resolution to be cropped like them')
            losses['loss_recon'] = recon_scale * self.recon_head.loss(
                out.pixel_feats, t, crop_box(target, out.pixel_box))
        if num_src and self.degraded_fd_weight > 0:
            losses['loss_dic_fd'] = self.degraded_feature_distance(
                ctx, out.select(slice(0, num_src)), labels[:num_src])
        return losses

    def degraded_feature_distance(self, ctx: UDAStepContext, out: TrainForward,
                                  labels: Tensor) -> Tensor:
        """*Variant*: the degraded source forward ``out`` pulled to a clean
        reference at the feature distance's view (:meth:`UDASegmentor.fd_view`)."""
        if self.degraded_fd_reference == 'imnet':
            if ctx.imnet_feature_distance is None:
                raise RuntimeError(
                    "DiDA: degraded_fd_reference='imnet' needs the host's ImageNet "
                    'feature distance (imnet_feature_dist_lambda > 0); use '
                    "'clean' for a randomly initialised model")
            return self.degraded_fd_weight * ctx.imnet_feature_distance(
                ctx.src_inputs, labels[:, None], out)
        seg = as_uda_segmentor(ctx.student)
        feat, view, _ = seg.fd_view(out, ctx.src_inputs, labels)
        with torch.no_grad():
            ref = seg.backbone_feat(view)[-1].detach()
        return self.degraded_fd_weight * masked_feat_dist(feat, ref)


def _part(value: Optional[Tensor], index: slice) -> Optional[Tensor]:
    return None if value is None else value[index]


def _views(views: Optional[ViewNoise], index: slice) -> dict:
    """The per-view noise arguments of ``_chunk_losses`` (none on the paper's path)."""
    return {} if views is None else dict(views=views, index=index)


@contextmanager
def frozen_parameters(module: nn.Module, names: Sequence[str]):
    """Scope in which the parameters of ``module``'s submodules ``names`` do not
    require grad: a graph built inside it sends them no gradient (their
    ``requires_grad`` is restored on exit; the graph stays as built)."""
    params = [p for name in names for p in module.get_submodule(name).parameters()
              if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f'DiDA: {name} must be one of {list(choices)}, '
                         f'got {value!r}')

"""DACS self-training as used by DAFormer (Hoyer et al., CVPR 2022, Sec. 3).

One training step minimises::

    L = L_S + lambda_FD L_FD + L_T + sum_plugins L_plugin

* ``L_S``: cross-entropy of the student on the labelled source batch (Eq. 1);
* ``L_FD``: ImageNet feature distance of the student's last-stage source features to a
  frozen copy of the initial model, on thing classes (DAFormer Eq. 5-6; HRDA: of the
  features at its ``feature_scale``);
* ``L_T``: cross-entropy on the ClassMix-ed batch (source pixels of half of the source
  classes pasted onto the target) against the mixed labels, each target pixel weighted by
  the EMA teacher's batch confidence q^T = |{p : max_c softmax >= tau}| / |pixels| (Eq. 3);
* plug-ins (MIC, DiDA, ...) add their own named losses through
  :class:`~mmseg_dida.models.uda.plugin.BaseUDAPlugin`.

The student is reached only through its contract
(:class:`~mmseg_dida.models.segmentors.UDASegmentor`: losses and features of a batch,
with per-pixel weights), so that the same step trains mmseg's ``EncoderDecoder``
(DAFormer) and HRDA's multi-resolution segmentor.

The step is that list: :meth:`DACS.loss_groups` yields the named loss groups in order
(source, mixed, then each plug-in's) and :meth:`DACS.backward_groups` back-propagates
each through the optimiser wrapper (AMP-aware) before the next is computed (as in
DAFormer, to bound memory). A loss is an entry whose key
:func:`~mmseg_dida.models.losses.loss_keys.is_loss_key` names, as for mmengine and the
student contract. The optimiser step is taken once after all groups. Under
:class:`~mmseg_dida.models.uda.wrappers.UDADistributedWrapper` the gradients are averaged
over processes once between the last backward pass and the step.
"""
import copy
from contextlib import closing, nullcontext
from dataclasses import replace
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.optim import OptimWrapper
from mmseg.registry import MODELS
from torch import Tensor, nn

from ..losses.loss_keys import is_loss_key
from ..segmentors.uda_segmentor import TrainForward, UDASegmentor, as_uda_segmentor
from ..utils.feature_distance import masked_feat_dist, thing_class_mask
from ..utils.mixing import class_mix, get_class_masks
from ..utils.norm_buffers import preserved_norm_buffers
from ..utils.strong_transforms import StrongAugmentation, normalisation_of
from .ema_teacher import EMATeacher
from .memory_fallback import replay_on_out_of_memory
from .plugin import BaseUDAPlugin, UDAStepContext, sum_loss_groups

__all__ = ['DACS', 'batch_confidence_weight']

CITYSCAPES_THING_CLASSES = (6, 7, 11, 12, 13, 14, 15, 16, 17, 18)


def _dist_sum(value: Tensor) -> Tensor:
    """Sum over processes (identity when not distributed)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value)
    return value


def _world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def stack_labels(samples: Sequence) -> Tensor:
    """The samples' ``gt_sem_seg`` stacked, (N, 1, H, W) long."""
    return torch.stack([s.gt_sem_seg.data for s in samples]).long()


def batch_confidence_weight(max_prob: Tensor, threshold: float) -> Tensor:
    """q^T: fraction of pixels of the batch whose max softmax probability is >= tau
    (DAFormer Eq. 3; one scalar per batch). Under torch.distributed the batch is the
    union of all processes' batches."""
    counts = torch.stack([(max_prob >= threshold).sum().float(),
                          max_prob.new_full((), float(max_prob.numel()))])
    counts = _dist_sum(counts)
    return counts[0] / counts[1]


@MODELS.register_module()
class DACS(BaseModel):
    """DACS/DAFormer self-training around an mmseg segmentor.

    Args:
        segmentor (dict): Config of the student: an mmseg ``EncoderDecoder`` or a
            :class:`~mmseg_dida.models.segmentors.UDASegmentor` (HRDA); its data
            preprocessor processes both halves of the UDA batch.
        plugins (list[dict]): Configs of :class:`BaseUDAPlugin` s (MIC, DiDA, ...).
        source_only (bool): Train on the source loss (+ plug-ins) only: no teacher, no
            pseudo labels, no mixing. Default False.
        alpha (float): Maximum EMA momentum of the teacher. Default 0.999.
        pseudo_threshold (float): tau of the confidence weight. Default 0.968.
        pseudo_weight_ignore_top (int): Image rows at the top whose pseudo weight is 0.
            Default 15 (DAFormer, Cityscapes targets); HRDA/MIC use 0 and the target
            samples' ``valid_pseudo_mask`` (``crop_pseudo_margins``) instead.
        pseudo_weight_ignore_bottom (int): Same at the bottom. Default 120 (DAFormer).
        color_jitter_strength (float): Default 0.2.
        color_jitter_probability (float): Default 0.2.
        blur (bool): Gaussian blur in the strong augmentation. Default True.
        imnet_feature_dist_lambda (float): lambda_FD; 0 disables FD. Default 0.005.
        imnet_feature_dist_classes (Sequence[int] | None): Thing classes of the FD mask;
            None uses every pixel. Default: Cityscapes things.
        imnet_feature_dist_scale_min_ratio (float): Majority-vote ratio of the label
            downscaling. Default 0.75.
        data_preprocessor: Ignored (the student's preprocessor is used); accepted so that
            mmengine's default arguments do not break building.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 segmentor: dict,
                 plugins: Optional[List[dict]] = None,
                 source_only: bool = False,
                 alpha: float = 0.999,
                 pseudo_threshold: float = 0.968,
                 pseudo_weight_ignore_top: int = 15,
                 pseudo_weight_ignore_bottom: int = 120,
                 color_jitter_strength: float = 0.2,
                 color_jitter_probability: float = 0.2,
                 blur: bool = True,
                 imnet_feature_dist_lambda: float = 0.005,
                 imnet_feature_dist_classes: Optional[Sequence[int]] = (
                     CITYSCAPES_THING_CLASSES),
                 imnet_feature_dist_scale_min_ratio: float = 0.75,
                 data_preprocessor=None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(segmentor, (dict, nn.Module)):
            raise TypeError('DACS: segmentor must be a config dict, got '
                            f'{type(segmentor).__name__}')
        if not 0.0 < pseudo_threshold <= 1.0:
            raise ValueError('DACS: pseudo_threshold must be in (0, 1], got '
                             f'{pseudo_threshold}')
        if pseudo_weight_ignore_top < 0 or pseudo_weight_ignore_bottom < 0:
            raise ValueError('DACS: pseudo_weight_ignore_top/bottom must be >= 0')
        if imnet_feature_dist_lambda < 0:
            raise ValueError('DACS: imnet_feature_dist_lambda must be >= 0, got '
                             f'{imnet_feature_dist_lambda}')
        self.source_only = source_only
        self.pseudo_threshold = pseudo_threshold
        self.pseudo_weight_ignore_top = pseudo_weight_ignore_top
        self.pseudo_weight_ignore_bottom = pseudo_weight_ignore_bottom
        self.fd_lambda = imnet_feature_dist_lambda
        self.fd_classes = (None if imnet_feature_dist_classes is None else
                           tuple(imnet_feature_dist_classes))
        self.fd_min_ratio = imnet_feature_dist_scale_min_ratio
        self.strong_aug = StrongAugmentation(color_jitter_strength,
                                             color_jitter_probability, blur)

        self.student = (MODELS.build(copy.deepcopy(segmentor))
                        if isinstance(segmentor, dict) else segmentor)
        as_uda_segmentor(self.student)  # refuses a student without the contract
        if not source_only and not hasattr(self.student.decode_head,
                                           'weighted_loss_by_label'):
            raise ValueError(
                f'DACS: the decode head {type(self.student.decode_head).__name__} '
                'ignores the per-pixel seg_weight that carries the pseudo-label '
                'confidence; use a head with SegWeightLossMixin (DAFormerHead, '
                'DLV2Head, WeightedSegformerHead) or source_only=True.')
        # The ImageNet model is a frozen copy of the initial student, built before any
        # plug-in changes the student; its weights are re-synchronised in init_weights.
        self.imnet_model = None
        self._initial_children = {}
        if self.fd_lambda > 0:
            self.imnet_model = copy.deepcopy(self.student)
            self.imnet_model.requires_grad_(False)
            self._initial_children = dict(self.student.named_children())
        self.plugins = nn.ModuleList()
        for cfg in plugins or []:
            plugin = MODELS.build(cfg) if isinstance(cfg, dict) else cfg
            if not isinstance(plugin, BaseUDAPlugin):
                raise TypeError(f'DACS: plug-in {type(plugin).__name__} is not a '
                                'BaseUDAPlugin')
            self.plugins.append(plugin)
        for plugin in self.plugins:
            plugin.attach(self)
        self.teacher = None if source_only else EMATeacher(
            self.student, alpha, strip=[p.strip_teacher for p in self.plugins])
        # Iteration counter; a buffer so that it is saved and resumed with the model.
        self.register_buffer('local_iter', torch.zeros((), dtype=torch.long))
        # ... and its value on the host (read from the buffer once after a load), so
        # that a step never waits for the GPU to read it
        self._host_iter: Optional[int] = None
        self.register_load_state_dict_post_hook(DACS._forget_host_iter)
        # Named images of one step, kept only when a visualisation hook asks for them
        # by setting {} before the step (UDAVisualizationHook); plug-ins add theirs
        # through UDAStepContext.vis_images.
        self.vis_images: Optional[Dict[str, Tensor]] = None
        # The teacher's pseudo labels of the last step (N, H, W), kept only while a
        # hook asks for them (PseudoLabelStatsHook sets record_pseudo_labels).
        self.record_pseudo_labels = False
        self.last_pseudo_labels: Optional[Tensor] = None
        # The batch goes to the device without the host waiting for the device's queue
        # (a blocking upload would; tests/helpers/host_sync.py).
        for module in self.modules():
            if isinstance(module, BaseDataPreprocessor):
                module._non_blocking = True

    # ----------------------------------------------------------------- housekeeping
    @property
    def iteration(self) -> int:
        """The number of steps trained (``local_iter``), read on the host."""
        if self._host_iter is None:
            self._host_iter = int(self.local_iter)
        return self._host_iter

    @staticmethod
    def _forget_host_iter(module, incompatible_keys) -> None:
        module._host_iter = None

    def init_weights(self):
        super().init_weights()
        with torch.no_grad():
            if self.imnet_model is not None:
                for name, child in self._initial_children.items():
                    getattr(self.imnet_model, name).load_state_dict(child.state_dict())
            if self.teacher is not None:
                self.teacher.copy_from(self.student)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.imnet_model is not None:
            self.imnet_model.eval()
        if self.teacher is not None:
            self.teacher.train(mode)
        return self

    @property
    def seg(self) -> UDASegmentor:
        """The student's contract (losses and features of a batch)."""
        return as_uda_segmentor(self.student)

    @property
    def num_classes(self) -> int:
        return self.student.decode_head.num_classes

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        """Inference goes to the student."""
        return self.student(inputs, data_samples, mode)

    def val_step(self, data):
        return self.student.val_step(data)

    def test_step(self, data):
        return self.student.test_step(data)

    # ------------------------------------------------------------------ the step
    def train_step(self, data: dict, optim_wrapper: OptimWrapper) -> Dict[str, Tensor]:
        """All backward passes of the step, then one optimiser step."""
        log_vars = self.forward_backward(data, optim_wrapper)
        self.optimizer_step(optim_wrapper)
        return log_vars

    @staticmethod
    def optimizer_step(optim_wrapper: OptimWrapper) -> None:
        optim_wrapper.step()
        optim_wrapper.zero_grad()

    def forward_backward(self, data: dict, optim_wrapper: OptimWrapper
                         ) -> Dict[str, Tensor]:
        """Back-propagate the step's loss groups (:meth:`loss_groups`); no optimiser
        step. Returns the log: every group's entries, detached, and their total
        ``loss`` (the sum of the entries :func:`is_loss_key` names). A step that runs
        out of GPU memory while a plug-in has a memory fallback is replayed with it
        (:func:`~mmseg_dida.models.uda.memory_fallback.replay_on_out_of_memory`)."""
        if getattr(optim_wrapper, '_accumulative_counts', 1) != 1:
            raise ValueError('DACS: gradient accumulation (accumulative_counts > 1) is '
                             'not supported by the multi-backward UDA step')
        iteration = self.iteration
        self.update_teacher(iteration)
        log_vars = replay_on_out_of_memory(
            self, self.plugins,
            lambda: self.backward_groups(self.loss_groups(self.step_context(data)),
                                         optim_wrapper),
            optim_wrapper, iteration)
        self.local_iter += 1
        self._host_iter = iteration + 1
        log_vars['loss'] = sum(v for k, v in log_vars.items() if is_loss_key(k))
        return log_vars

    def loss_groups(self, ctx: UDAStepContext
                    ) -> Iterator[Tuple[str, Dict[str, Tensor]]]:
        """The step's named loss groups, in order: L_S (+ lambda_FD L_FD) of the
        source batch, L_T of the mixed batch (logged with the batch confidence q^T as
        ``pseudo_weight``), then each plug-in's groups. The caller back-propagates each
        group before it asks for the next, so the teacher labels the target after the
        source backward pass."""
        yield 'source', self.source_losses(ctx)
        if self.teacher is not None:
            ctx = self.with_pseudo_labels(ctx)
            yield 'mixed', {'pseudo_weight': ctx.pseudo_weight.flatten()[0],
                            **self.mixed_losses(ctx)}
        for plugin in self.plugins:
            yield from self.plugin_groups(plugin, ctx)

    def backward_groups(self, groups: Iterator[Tuple[str, Dict[str, Tensor]]],
                        optim_wrapper: OptimWrapper) -> Dict[str, Tensor]:
        """Compute the named loss groups one at a time (in the optimiser wrapper's
        context: AMP's autocast), back-propagate the sum of each group's losses
        (:func:`is_loss_key`; each entry's mean, as mmengine's ``parse_losses``), log
        every entry and drop the group before the next is computed, so that one group's
        graph is alive at a time. Returns the log (detached; a key present in several
        groups summed)."""
        log: Dict[str, Tensor] = {}
        with closing(groups):
            while True:
                with optim_wrapper.optim_context(self):
                    group = next(groups, None)
                if group is None:
                    return log
                name, losses = group
                for key, value in losses.items():
                    if not isinstance(value, Tensor):
                        raise TypeError(f'DACS: the {name} loss group returned {key}='
                                        f'{type(value).__name__}; losses must be tensors')
                values = {k: v.mean() for k, v in losses.items()}
                loss = sum(v for k, v in values.items() if is_loss_key(k))
                if isinstance(loss, Tensor) and loss.requires_grad:
                    optim_wrapper.backward(loss)
                log = sum_loss_groups([log, {k: v.detach() for k, v in values.items()}])
                del group, losses, values, loss

    def step_context(self, data: dict) -> UDAStepContext:
        """The context of a step on the UDA batch ``data`` (keys 'source' and
        'target'): both halves through the student's data preprocessor, the source
        labels stacked once; no pseudo labels yet (:meth:`with_pseudo_labels`)."""
        if set(data) != {'source', 'target'}:
            raise KeyError("DACS: a UDA batch has the keys 'source' and 'target', got "
                           f'{sorted(data)}')
        src = self.student.data_preprocessor(data['source'], True)
        tgt = self.student.data_preprocessor(data['target'], True)
        src_gt = stack_labels(src['data_samples'])
        self.keep_vis(src_img=src['inputs'], src_label=src_gt, tgt_img=tgt['inputs'])
        return UDAStepContext(
            student=self.student, teacher=self.teacher_model,
            src_inputs=src['inputs'], src_data_samples=src['data_samples'],
            tgt_inputs=tgt['inputs'], tgt_data_samples=tgt['data_samples'],
            pseudo_label=None, pseudo_weight=None, iteration=self.iteration,
            src_labels=src_gt[:, 0],
            imnet_feature_distance=(None if self.imnet_model is None
                                    else self.feature_distance),
            vis_images=self.vis_images)

    def update_teacher(self, iteration: int) -> None:
        """The EMA teacher before step ``iteration``: a copy of the student at the
        first step, the EMA update afterwards (none in source-only mode)."""
        if self.teacher is None:
            return
        if iteration == 0:
            self.teacher.copy_from(self.student)
        else:
            self.teacher.update(self.student, iteration)

    def plugin_groups(self, plugin: BaseUDAPlugin, ctx: UDAStepContext
                      ) -> Iterator[Tuple[str, Dict[str, Tensor]]]:
        """A plug-in's loss groups, named by its class. For a plug-in that
        ``preserves_norm_buffers`` the student's normalisation buffers are restored
        after the backward pass of its last group (the caller back-propagates each
        group before it asks for the next)."""
        scope = (preserved_norm_buffers(self.student)
                 if plugin.preserves_norm_buffers else nullcontext())
        with scope:
            for losses in plugin.loss_groups(ctx):
                yield type(plugin).__name__, losses

    def plugin_losses(self, plugin: BaseUDAPlugin, ctx: UDAStepContext,
                      optim_wrapper: OptimWrapper) -> Dict[str, Tensor]:
        """Back-propagate one plug-in's loss groups; return their log."""
        return self.backward_groups(self.plugin_groups(plugin, ctx), optim_wrapper)

    def keep_vis(self, **images: Tensor) -> None:
        """Keep ``images`` (detached) when a visualisation hook asked for this step's."""
        if self.vis_images is not None:
            self.vis_images.update({k: v.detach() for k, v in images.items()})

    @property
    def teacher_model(self) -> Optional[nn.Module]:
        return None if self.teacher is None else self.teacher.model

    # --------------------------------------------------------------- loss groups
    def source_losses(self, ctx: UDAStepContext) -> Dict[str, Tensor]:
        """L_S and, when enabled, lambda_FD * L_FD of the source batch (keys
        ``src.*``)."""
        src_gt = ctx.src_labels[:, None]
        losses, out = self.seg.uda_forward_loss(ctx.src_inputs, src_gt)
        losses = {f'src.{k}': v for k, v in losses.items()}
        if self.imnet_model is not None:
            losses['src.loss_imnet_feat_dist'] = self.feature_distance(
                ctx.src_inputs, src_gt, out)
        return losses

    def feature_distance(self, img: Tensor, gt: Tensor, out: TrainForward) -> Tensor:
        """lambda_FD * L_FD (DAFormer Eq. 5-6) of the images ``img`` with labels ``gt``
        (N, 1, H, W) and the student's forward ``out`` of them: the last backbone level the
        student's contract names (``fd_view``), against the frozen ImageNet model's
        backbone on the same view of ``img``."""
        feat, view, view_gt = self.seg.fd_view(out, img, gt)
        with torch.no_grad():
            self.imnet_model.eval()
            feat_ref = as_uda_segmentor(self.imnet_model).backbone_feat(view)[-1]
            feat_ref = feat_ref.detach()
        mask = None
        count = feat.shape[0] * feat.shape[-2] * feat.shape[-1]
        if self.fd_classes is not None:
            mask = thing_class_mask(view_gt, feat.shape[-2:], self.fd_classes,
                                    self.fd_min_ratio, self.num_classes)
            count = mask.sum()
        # Mean over the selected pixels of all processes, so that averaging gradients
        # over processes equals one process with the whole batch.
        count = _dist_sum(count.float() if mask is not None
                          else feat.new_full((), float(count), dtype=torch.float32))
        denominator = count / _world_size()  # a device tensor: no host wait
        return self.fd_lambda * masked_feat_dist(feat, feat_ref, mask, denominator)

    @torch.no_grad()
    def pseudo_label(self, tgt_img: Tensor, tgt_samples: List
                     ) -> Tuple[Tensor, Tensor]:
        """Teacher pseudo labels p^T (N, H, W) and the plain per-pixel weight q^T
        (N, H, W), the batch confidence broadcast to every pixel."""
        metas = [s.metainfo for s in tgt_samples]
        logits = self.teacher.model.encode_decode(tgt_img, metas)
        if logits.shape[-2:] != tgt_img.shape[-2:]:
            logits = F.interpolate(logits, size=tgt_img.shape[-2:], mode='bilinear',
                                   align_corners=False)
        max_prob, label = torch.softmax(logits.float(), dim=1).max(dim=1)
        q = batch_confidence_weight(max_prob, self.pseudo_threshold)
        self.keep_vis(pseudo_confidence=max_prob)
        return label, q * torch.ones_like(max_prob)

    def mask_pseudo_weight(self, weight: Tensor, tgt_samples: List) -> Tensor:
        """Zero the weight on the ignored top/bottom rows and outside the samples'
        ``valid_pseudo_mask`` (``crop_pseudo_margins``)."""
        weight = weight.clone()
        if self.pseudo_weight_ignore_top > 0:
            weight[:, :self.pseudo_weight_ignore_top] = 0
        if self.pseudo_weight_ignore_bottom > 0:
            weight[:, -self.pseudo_weight_ignore_bottom:] = 0
        h, w = weight.shape[-2:]
        for i, sample in enumerate(tgt_samples):
            if 'valid_pseudo_mask' in sample:
                valid = sample.valid_pseudo_mask.data.to(weight.device)
                valid = valid.reshape(valid.shape[-2:])[:h, :w]
                # Pixels the data preprocessor padded are not valid either.
                full = weight.new_zeros((h, w))
                full[:valid.shape[0], :valid.shape[1]] = valid.to(weight.dtype)
                weight[i] *= full
        return weight

    def class_masks(self, src_labels: Tensor) -> Tensor:
        """ClassMix masks (N, 1, H, W) from the source labels (N, 1, H, W)."""
        return get_class_masks(src_labels)

    def with_pseudo_labels(self, ctx: UDAStepContext) -> UDAStepContext:
        """``ctx`` with the teacher's pseudo labels p^T of the clean target images,
        their weight q^T and that weight masked (:meth:`mask_pseudo_weight`)."""
        label, weight = self.pseudo_label(ctx.tgt_inputs, ctx.tgt_data_samples)
        masked = self.mask_pseudo_weight(weight, ctx.tgt_data_samples)
        self.keep_vis(pseudo_label=label, pseudo_weight=masked)
        if self.record_pseudo_labels:
            self.last_pseudo_labels = label.detach()
        return replace(ctx, pseudo_label=label, pseudo_weight=weight,
                       pseudo_weight_masked=masked)

    def mixed_losses(self, ctx: UDAStepContext) -> Dict[str, Tensor]:
        """L_T on the ClassMix-ed, strongly augmented batch (keys ``mix.*``): source
        labels where source pixels are pasted (weight 1), the pseudo labels elsewhere
        (weight ``ctx.pseudo_weight_masked``)."""
        masks = self.class_masks(ctx.src_labels[:, None])
        mixed_img = class_mix(masks, ctx.src_inputs, ctx.tgt_inputs)
        mixed_img = self.strong_aug(mixed_img,
                                    *normalisation_of(self.student.data_preprocessor))
        mixed_label = class_mix(masks, ctx.src_labels, ctx.pseudo_label)
        weight = ctx.pseudo_weight_masked
        mixed_weight = class_mix(masks, torch.ones_like(weight), weight)
        self.keep_vis(mix_img=mixed_img, mix_label=mixed_label)
        losses, _ = self.seg.uda_forward_loss(mixed_img, mixed_label, mixed_weight)
        return {f'mix.{k}': v for k, v in losses.items()}

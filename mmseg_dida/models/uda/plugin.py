"""The interface through which plug-ins (MIC, DiDA, ...) add losses to a UDA step.

A self-training model (e.g. :class:`~mmseg_dida.models.uda.DACS`) builds one
:class:`UDAStepContext` per training step, after its own source and mixed-target
losses, and asks every configured plug-in for extra losses, group by group, each group
back-propagated (and its graph freed) before the next one is computed::

    for plugin in self.plugins:
        for losses in plugin.loss_groups(ctx):
            backward(losses)

A plug-in never edits the self-training model and the self-training model never
imports a plug-in: they meet only here. A plug-in reaches the student through its
contract, :func:`~mmseg_dida.models.segmentors.as_uda_segmentor` (losses and features
of a batch, with per-pixel weights), so that it works for single-scale and HRDA
students alike.

A plug-in whose passes run the student on inputs inference never sees (DiDA's degraded
images) declares ``preserves_norm_buffers``; the host then runs all of that plug-in's
groups, backward passes included, inside
:func:`~mmseg_dida.models.utils.preserved_norm_buffers`: batch statistics are used in
the passes, but the running statistics that inference and the exported model use are
left as the host's own passes set them.
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from mmengine.model import BaseModule
from torch import Tensor, nn


def sum_loss_groups(groups: Iterable[Dict[str, Tensor]]) -> Dict[str, Tensor]:
    """One dict from loss groups (or their logs), a key present in several groups
    summed."""
    out: Dict[str, Tensor] = {}
    for group in groups:
        for key, value in group.items():
            out[key] = out[key] + value if key in out else value
    return out


@dataclass
class UDAStepContext:
    """Everything a plug-in may read in one self-training step.

    Attributes:
        student: The segmentor being trained (an mmseg ``EncoderDecoder`` or a
            :class:`~mmseg_dida.models.segmentors.UDASegmentor`; use it through
            ``as_uda_segmentor``).
        teacher: The EMA teacher segmentor (no gradients), or None in source-only mode.
        src_inputs: Normalised source images, (N, 3, H, W).
        src_data_samples: Source ``SegDataSample`` list (``gt_sem_seg`` set).
        tgt_inputs: Normalised target images, (N, 3, H, W), clean (not mixed).
        tgt_data_samples: Target ``SegDataSample`` list (no labels are read).
        pseudo_label: The teacher's pseudo labels on ``tgt_inputs``, (N, H, W) long;
            None in source-only mode.
        pseudo_weight: Their per-pixel confidence weight q^T, (N, H, W) float: the
            batch confidence broadcast to every pixel, WITHOUT the top/bottom row
            ignore and the ``valid_pseudo_mask``; None in source-only mode.
        iteration: The current training iteration (0-based).
        src_labels: The source labels, (N, H, W) long (stacked once by the host).
        pseudo_weight_masked: ``pseudo_weight`` with the host's ignored rows and the
            samples' ``valid_pseudo_mask`` zeroed (what L_T uses before mixing;
            MIC's masked-image loss and DiDA's L_D use this one); None in
            source-only mode.
        imnet_feature_distance: The host's weighted ImageNet feature distance
            ``fd(image, labels (N, 1, H, W), out) -> lambda_FD * L_FD`` of the
            student's forward ``out`` of ``image``
            (:class:`~mmseg_dida.models.segmentors.TrainForward`) against the frozen
            ImageNet model's features of ``image`` in the same view (the student's
            ``fd_view``); None when the host has no feature distance.
        vis_images: The named pictures of this step that a visualisation hook asked
            for (:class:`~mmseg_dida.engine.hooks.UDAVisualizationHook`), or None
            when none did. A plug-in may add its own (e.g. MIC's masks), detached:
            float (N, 3, H, W) normalised images, integer (N, H, W) labels, float
            (N, H, W) maps in [0, 1] (confidences, masks).
    """
    student: nn.Module
    teacher: Optional[nn.Module]
    src_inputs: Tensor
    src_data_samples: List
    tgt_inputs: Tensor
    tgt_data_samples: List
    pseudo_label: Optional[Tensor]
    pseudo_weight: Optional[Tensor]
    iteration: int
    src_labels: Tensor
    pseudo_weight_masked: Optional[Tensor] = None
    imnet_feature_distance: Optional[Callable[[Tensor, Tensor, Any], Tensor]] = None
    vis_images: Optional[Dict[str, Tensor]] = None


class BaseUDAPlugin(BaseModule):
    """Base class of UDA plug-ins.

    Subclasses are registered in ``mmseg.registry.MODELS`` and listed in the UDA model's
    ``plugins`` config. They are ``nn.Module`` children of the UDA model, so their own
    parameters (e.g. DiDA's reconstruction head) are trained and checkpointed with it.

    Attributes:
        preserves_norm_buffers (bool): The host restores every normalisation buffer of
            the student after this plug-in's loss groups (forward and backward passes)
            so that they change only through the host's own passes. Default False.
    """

    preserves_norm_buffers: bool = False

    def attach(self, uda_model: nn.Module) -> None:
        """Called once by the UDA model right after it builds the student and before it
        creates the EMA teacher (a copy of the student). A plug-in that must change the
        student (e.g. wrap its backbone) does it here. Default: nothing."""

    def strip_teacher(self, model: nn.Module) -> nn.Module:
        """Called once with the EMA teacher's fresh copy of the (attached) student;
        returns what the teacher keeps. A plug-in whose student parts are used on the
        student only (e.g. DiDA's g') drops them here, so the teacher holds and
        averages no copy of them. The returned module must consist of modules of
        ``model`` (no new ones): the EMA pairs teacher and student tensors through the
        copy. Default: ``model`` unchanged."""
        return model

    def memory_fallback(self) -> Optional[str]:
        """What this plug-in would change to use less memory when a step runs out of
        it (:mod:`~mmseg_dida.models.uda.memory_fallback`: the step is then replayed),
        or None when it has nothing to change. Default: None."""
        return None

    def use_memory_fallback(self, student: nn.Module) -> str:
        """Make the change :meth:`memory_fallback` names (called only when it is not
        None); returns a description for the log."""
        raise NotImplementedError

    def losses(self, ctx: UDAStepContext) -> Dict[str, Tensor]:
        """Return named, already-weighted losses (keys start with ``loss_``).

        Values that are not to be back-propagated (statistics to log) are returned as
        detached tensors whose key is not a loss key
        (:func:`~mmseg_dida.models.losses.loss_keys.is_loss_key`: it does not contain
        ``loss``).
        """
        raise NotImplementedError

    def loss_groups(self, ctx: UDAStepContext) -> Iterator[Dict[str, Tensor]]:
        """The plug-in's losses as a sequence of groups. The caller back-propagates
        each group before it asks for the next, so a plug-in bounds its memory by
        splitting its work. A key present in several groups is summed in the log
        (:func:`sum_loss_groups`).
        Default: one group, :meth:`losses`."""
        yield self.losses(ctx)

"""DiDA's semantic shift compensation: the diffusion encoder g' and its time FiLM.

DiDA (NeurIPS 2025, arXiv 2412.10339), Sec. 3.2: a trainable encoder g' of the same
architecture as the backbone g, conditioned on the timestep t, compensates the
semantic shift that the degradation causes. At every feature level i

    z_hat_(t,i) = z'_(t,i) * (MLP_s^i(Embed(t)) + 1) + MLP_b^i(Embed(t)),   (Eq. 4)

with z'_(t,i) the i-th level of g'(x_t), and the fused features are g(x_t) + z_hat.

:class:`DiffusionEncoder` is a drop-in backbone: it wraps g, and reads t from a scoped
context so that mmseg segmentors (``extract_feat``, HRDA's multi-crop path) work
unchanged::

    with segmentor.backbone.timestep(t):
        feats = segmentor.extract_feat(x_t)     # g(x_t) + z_hat
    feats = segmentor.extract_feat(x)           # exactly g(x)

At deployment the wrapper is replaced by g (:meth:`DiffusionEncoder.deploy_module`,
:mod:`mmseg_dida.deploy`).

The paper's ablation ticks "g_time" (a time embedding in the shared encoder g) in every
row from the second on, the full method included, without saying where g reads t.
``block_time=True`` is the reading of the authors' earlier code: a FiLM of t inside
every Mix-FFN of g, after its depthwise convolution, in degraded passes only (forward
hooks that live for one degraded call of g; g's weights and keys are untouched, a pass
without t is exactly g, and the FiLMs start at the identity).
"""
import copy
from contextlib import contextmanager
from functools import partial
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..utils.memory_saving import DEFAULT_MEMORY_SAVING, memory_saving_mode
from ..utils.time_embedding import COMPENSATION_INITS, TimeEmbedding, TimeFiLM

__all__ = ['DiffusionEncoder', 'mix_ffn_depthwise_convs']

MODES = ('full', 'g_time', 'none')


def mix_ffn_depthwise_convs(backbone: nn.Module) -> List[nn.Conv2d]:
    """The depthwise 3x3 convolution of every MiT Mix-FFN of ``backbone``, in
    forward order (mmseg's ``MixFFN.layers``: 1x1 conv, depthwise conv, ...)."""
    convs = []
    for module in backbone.modules():
        if type(module).__name__ == 'MixFFN':
            conv = module.layers[1]
            if not (isinstance(conv, nn.Conv2d) and conv.groups == conv.in_channels
                    == conv.out_channels):
                raise ValueError('DiffusionEncoder: a MixFFN without its depthwise '
                                 'convolution at layers[1]')
            convs.append(conv)
    return convs


@MODELS.register_module()
class DiffusionEncoder(BaseModule):
    """Backbone wrapper g (+ g') with a time-conditioned feature modulation (DiDA).

    Args:
        backbone: Config (or an already built module) of the backbone g.
        mode: 'full' (paper): separate g', features g(x_t) + FiLM_t(g'(x_t)).
            'g_time' (ablation "+ time embedding in g"): no g', features
            FiLM_t(g(x_t)). 'none' (ablation "L_D only"): t is ignored, features g(x_t).
        level_channels: Channels of g's output levels; None infers them with one
            forward of a 64x64 zero image.
        embed_dim: Sinusoidal embedding size (16).
        time_dim: Width of the time MLP and its output (256).
        compensation_init: 'default' (torch's initialisation of the FiLM MLPs: at step
            0 z_hat ~ z', so with g' a copy of g the fused features are ~2 g) or
            'zero' (MLP_s gives scale + 1 = 0 and MLP_b = 0 for every t: z_hat = 0 at
            step 0, the fused features start as g(x_t); Eq. 4 is unchanged and the
            modulation is learnt from there). Mode 'g_time' has no z' and keeps
            'default' (a zero FiLM would zero its features).
        block_time: Also condition g itself on t: a FiLM (:class:`TimeFiLM`, its
            own per block) of the hidden features of every MiT Mix-FFN of g, after
            the depthwise convolution, in degraded passes only, starting at the
            identity (g's degraded pass begins as g); g' (mode 'full') is not
            modulated inside. False (default): g never reads t.
        memory_saving: DiDA's memory saving mode
            (:data:`~mmseg_dida.models.utils.memory_saving.MEMORY_SAVING`); this
            wrapper reads its activation checkpointing of g' and of g in degraded
            passes (the clean path is never checkpointed).
        init_cfg: mmengine init config of the wrapper itself.
    """

    def __init__(self, backbone: Union[dict, nn.Module], mode: str = 'full',
                 level_channels: Optional[Sequence[int]] = None, embed_dim: int = 16,
                 time_dim: int = 256, compensation_init: str = 'default',
                 memory_saving: str = DEFAULT_MEMORY_SAVING,
                 block_time: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if mode not in MODES:
            raise ValueError(f'DiffusionEncoder: mode must be one of {MODES}, '
                             f'got {mode!r}')
        if compensation_init not in COMPENSATION_INITS:
            raise ValueError('DiffusionEncoder: compensation_init must be one of '
                             f'{COMPENSATION_INITS}, got {compensation_init!r}')
        if compensation_init == 'zero' and mode != 'full':
            raise ValueError("DiffusionEncoder: compensation_init='zero' needs "
                             f"mode='full' (z_hat = FiLM(g'(x_t))), got mode={mode!r}")
        memory_saving_mode(memory_saving, 'DiffusionEncoder')
        if isinstance(backbone, DiffusionEncoder):
            raise TypeError('DiffusionEncoder: the backbone is already a '
                            'DiffusionEncoder')
        self.backbone = backbone if isinstance(backbone, nn.Module) else \
            MODELS.build(backbone)
        self.mode = mode
        self.compensation_init = compensation_init
        self.set_memory_saving(memory_saving)
        self._t: Optional[Tensor] = None
        self.g_prime_synced = False
        self.block_time = bool(block_time)
        # the time MLP is drawn before the FiLMs, as before the readings' options
        # came (a seeded run initialises the same weights)
        if mode != 'none' or self.block_time:
            self.time_embed = TimeEmbedding(embed_dim, time_dim)
        if mode == 'none':
            self.level_channels = list(level_channels or [])
        else:
            if level_channels is None:
                level_channels = self.infer_level_channels(self.backbone)
            self.level_channels = [int(c) for c in level_channels]
            self.film = nn.ModuleList(
                TimeFiLM(time_dim, c, compensation_init) for c in self.level_channels)
        if mode == 'full':
            # g' starts as a copy of g's weights, taken in init_weights (after g's
            # pretrained weights are loaded); it must not load g's file again.
            self.g_prime = copy.deepcopy(self.backbone)
            self.g_prime._is_init = True
        if self.block_time:
            convs = mix_ffn_depthwise_convs(self.backbone)
            if not convs:
                raise ValueError('DiffusionEncoder: block_time needs a backbone with '
                                 f'MiT Mix-FFNs, {type(self.backbone).__name__} has '
                                 'none')
            # identity at the start: g's degraded pass begins as g itself
            self.block_film = nn.ModuleList(
                TimeFiLM(time_dim, c.out_channels, 'identity') for c in convs)

    def set_memory_saving(self, memory_saving: str) -> None:
        """Use the activation checkpointing of ``memory_saving`` from the next pass on
        (DiDA's ``'auto'`` changes it while training)."""
        saving = memory_saving_mode(memory_saving, 'DiffusionEncoder')
        self.checkpoint_g_prime = saving.checkpoint_g_prime
        self.checkpoint_g = saving.checkpoint_g

    # ------------------------------------------------------------------ helpers
    def _run_g(self, x: Tensor, emb: Optional[Tensor]):
        """g(x); with ``block_time`` and a time embedding ``emb``, every Mix-FFN's
        depthwise convolution output goes through its block FiLM at ``emb``. The
        hooks live only for this call (a checkpointed g that recomputes the call
        registers them again): g carries no hook outside a degraded pass, so the
        EMA teacher's and the deployed copies of g are plain g."""
        if not self.block_time or emb is None:
            return self.backbone(x)
        handles = [conv.register_forward_hook(partial(self._block_film_hook, i, emb))
                   for i, conv in enumerate(mix_ffn_depthwise_convs(self.backbone))]
        try:
            return self.backbone(x)
        finally:
            for handle in handles:
                handle.remove()

    def _block_film_hook(self, index: int, emb: Tensor, module: nn.Module, args,
                         out: Tensor) -> Tensor:
        return self.block_film[index](out, emb)

    @staticmethod
    def infer_level_channels(backbone: nn.Module, size: int = 64) -> List[int]:
        """Channels of each output level of ``backbone`` (one eval forward)."""
        was_training = backbone.training
        param = next(backbone.parameters())
        backbone.eval()
        with torch.no_grad():
            outs = backbone(torch.zeros(1, 3, size, size, device=param.device,
                                        dtype=param.dtype))
        backbone.train(was_training)
        outs = [outs] if isinstance(outs, Tensor) else outs
        return [o.shape[1] for o in outs]

    @contextmanager
    def timestep(self, t: Optional[Tensor]):
        """Scope in which every forward is a degraded pass at timesteps ``t`` (N,)."""
        prev, self._t = self._t, t
        try:
            yield self
        finally:
            self._t = prev

    @torch.no_grad()
    def sync_g_prime(self) -> None:
        """Copy g's weights (parameters and buffers) into g'."""
        if self.mode != 'full':
            return
        self.g_prime.load_state_dict(self.backbone.state_dict())
        self.g_prime_synced = True

    def init_weights(self) -> None:
        super().init_weights()
        if self.mode == 'full':
            self.sync_g_prime()
        if self.mode != 'none':
            for film in self.film:
                film.reset_modulation()
        if self.block_time:
            for film in self.block_film:
                film.reset_modulation()

    # ------------------------------------------------------------------- deploy
    def deploy_module(self) -> nn.Module:
        """The deployed backbone: g alone (g', the time MLP and the FiLMs dropped;
        the deploy contract of :mod:`mmseg_dida.deploy`)."""
        return self.backbone

    @staticmethod
    def deployed_state_key(key: str) -> Optional[str]:
        """The key of this wrapper's state tensor ``key`` in g (its
        :meth:`deploy_module`): g's own tensors are held under ``backbone.``; every
        other tensor (g', the time MLP, the FiLMs) is training-only (None)."""
        return key[len('backbone.'):] if key.startswith('backbone.') else None

    @staticmethod
    def _run(module, x: Tensor, use_cp: bool, *args):
        if use_cp and torch.is_grad_enabled():
            return checkpoint(module, x, *args, use_reentrant=False)
        return module(x, *args)

    # ------------------------------------------------------------------ forward
    def degraded_levels(self, x: Tensor, t: Tensor
                        ) -> Tuple[List[Tensor], List[Tensor]]:
        """A degraded pass at timesteps ``t`` (N,): per level ``(g(x), fused)`` with
        fused = g(x) + FiLM_t(g'(x)) ('full', Eq. 4), FiLM_t(g(x)) ('g_time') or g(x)
        ('none'). The forward in a :meth:`timestep` scope returns ``fused``."""
        feats, fused, _ = self._degraded(x, t)
        return feats, fused

    def _degraded(self, x: Tensor, t: Tensor):
        if t.shape != (x.shape[0], ):
            raise ValueError(f'DiffusionEncoder: timestep shape {tuple(t.shape)} does '
                             f'not match the batch size {x.shape[0]}')
        emb = None
        if self.mode != 'none' or self.block_time:
            emb = self.time_embed(t.to(x.device, non_blocking=True))  # t: host draws
        feats = self._run(self._run_g, x, self.checkpoint_g,
                          emb if self.block_time else None)
        single = isinstance(feats, Tensor)
        feats = [feats] if single else list(feats)
        if self.mode == 'none':
            return feats, feats, single
        if len(feats) != len(self.film):
            raise ValueError(f'DiffusionEncoder: backbone returned {len(feats)} '
                             f'levels, level_channels has {len(self.film)}')
        if self.mode == 'g_time':
            return feats, [film(z, emb) for film, z in zip(self.film, feats)], single
        zp = self._run(self.g_prime, x, self.checkpoint_g_prime)
        zp = [zp] if isinstance(zp, Tensor) else list(zp)
        fused = [z + film(z_, emb) for film, z, z_ in zip(self.film, feats, zp)]
        return feats, fused, single

    def forward(self, x: Tensor):
        t = self._t
        if t is None or (self.mode == 'none' and not self.block_time):
            return self.backbone(x)
        _, fused, single = self._degraded(x, t)
        return fused[0] if single else fused

"""DiDAHook: the parts of DiDA's lifecycle the runner should not have to know about.

* before training (iteration 0 only, never on resume): make sure the diffusion encoder
  g' starts from g's weights once g's pretrained weights are loaded (the
  DiffusionEncoder does this in ``init_weights``; the hook covers models whose
  ``init_weights`` was not run), and log the degradation schedule;
* every ``vis_interval`` iterations: write one source image degraded at several t
  (x_t, Eq. 1) to the visualiser (``dida_x_t``), and below it what the degraded
  path h((g + g')(x_t), t) predicts for each (``dida_x_t_pred``, Cityscapes palette);
* every ``diag_interval`` iterations: measure what the degraded path feeds the decode
  head h (:func:`degraded_path_stats`) and write it to the log and the visualiser's
  scalars (``diag/*``), without changing the run (no gradients, the student's
  normalisation buffers and every random stream left as they were);
* after training: write a deployable checkpoint -- the plain segmentor h o g, with
  g', the time MLP/FiLMs, h', the EMA teacher and the ImageNet model stripped -- and
  its plain mmseg config (:func:`mmseg_dida.deploy.save_deployable`).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from ...deploy import save_deployable
from ...models.backbones.diffusion_encoder import DiffusionEncoder
from ...models.uda.dida import DiDA
from ...models.utils.norm_buffers import preserved_norm_buffers
from ...utils.visualization import colourise

__all__ = ['DiDAHook', 'degradation_strip', 'degraded_path_stats',
           'degraded_prediction_strip', 'strip_inputs']


@torch.no_grad()
def degradation_strip(plugin: DiDA, image: torch.Tensor, mean: torch.Tensor,
                      std: torch.Tensor, timesteps: Sequence[int]) -> np.ndarray:
    """One normalised image (3, H, W) degraded at each t of ``timesteps`` with the
    same eps, de-normalised and laid side by side: (H, W * len(timesteps), 3) uint8."""
    x_t, _ = strip_inputs(plugin, image, timesteps)
    img = (x_t * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)).clamp(0, 255)
    img = torch.cat(list(img), dim=2)  # (3, H, W * k)
    return img.permute(1, 2, 0).round().byte().cpu().numpy()


@torch.no_grad()
def strip_inputs(plugin: DiDA, image: torch.Tensor, timesteps: Sequence[int]
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """x_t (k, 3, H, W) of one normalised image (3, H, W) at the k ``timesteps``
    (one eps, from a generator of its own) and t (k,)."""
    deg = plugin.degradation
    x0 = image[None].float()
    t = torch.as_tensor(list(timesteps), device=x0.device).long()
    x0 = x0.expand(len(t), -1, -1, -1)
    gen = torch.Generator(device='cpu').manual_seed(0)
    noise = None
    if deg.kind == 'noise':
        h, w = x0.shape[-2:]
        s = deg.noise_downsample
        noise = torch.randn((1, 3, h // s, w // s), generator=gen).to(x0)
        noise = noise.expand(len(t), -1, -1, -1)
    x_t, _ = deg(x0, t, noise=noise, generator=gen)
    return x_t, t


@torch.no_grad()
def degraded_prediction_strip(plugin: DiDA, student: nn.Module, x_t: torch.Tensor,
                              t: torch.Tensor) -> np.ndarray:
    """What the degraded path predicts for each x_t (k, 3, H, W) at its t:
    argmax of :meth:`DiDA.segment_degraded` at the image size, in the Cityscapes
    palette, side by side: (H, W * k, 3) uint8. The student runs as in training
    (its current mode, batch statistics over the k images) without gradients; its
    normalisation buffers and the global random state are left as they were."""
    devices = [x_t.device] if x_t.is_cuda else []
    with torch.random.fork_rng(devices=devices), preserved_norm_buffers(student):
        _, logits = plugin.segment_degraded(student, x_t, t)
    logits = torch.nn.functional.interpolate(logits.float(), size=x_t.shape[-2:],
                                             mode='bilinear', align_corners=False)
    labels = torch.cat(list(logits.argmax(dim=1)), dim=1)  # (H, W * k)
    return colourise(labels)


def _norm_input_vars(layers: Sequence[nn.Module], run) -> List[float]:
    """Run ``run()``; return, for each of ``layers``, the variance of its input per
    channel over (N, H, W), averaged over channels (NaN for a layer not run)."""
    found: Dict[nn.Module, float] = {}

    def record(layer, args):
        x = args[0].detach().float()
        found[layer] = x.var(dim=[d for d in range(x.dim()) if d != 1]).mean().item()

    handles = [m.register_forward_pre_hook(record) for m in layers]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return [found.get(m, float('nan')) for m in layers]


@torch.no_grad()
def degraded_path_stats(plugin: DiDA, student: nn.Module, x0: torch.Tensor,
                        t: int, generator: torch.Generator) -> Dict[str, float]:
    """What the degraded path feeds the decode head h at one timestep ``t``, against
    the clean path, for clean normalised images ``x0`` (N, 3, H, W):

    * ``fused_ratio``: ||g(x_t) + z_hat|| / ||g(x_t)|| (mean over levels; 1 when the
      compensation is 0, ~2 when z_hat ~ g as at the start with g' = g);
    * ``h_in_std_ratio``: std of the fused features / std of the clean features g(x0)
      at h's input (mean over levels);
    * ``h_norm_var_ratio``: variance of the inputs of h's normalisation layers on the
      degraded path / on the clean path (mean over layers): what a BatchNorm's
      batch statistics see in the two passes;
    * ``h_running_var_ratio``: h's running variance / the clean batch variance at its
      normalisation layers (mean over layers): ~1 when inference statistics follow
      clean features, > 1 when degraded passes leak into them.

    Runs the student as in training (train mode, batch statistics) without
    gradients; the student's normalisation buffers and the global random state are
    restored afterwards. Returns NaN ratios for a head without normalisation layers.
    """
    enc = student.backbone
    head = student.decode_head
    layers = [m for m in head.modules() if isinstance(m, _NormBase)]
    tt = torch.full((x0.shape[0], ), int(t), dtype=torch.long, device=x0.device)
    devices = [x0.device] if x0.is_cuda else []
    with torch.random.fork_rng(devices=devices), preserved_norm_buffers(student):
        x_t, _ = plugin.degradation(x0, tt, generator=generator)
        g_t, fused = enc.degraded_levels(x_t, tt)
        clean = enc.backbone(x0)
        clean = [clean] if isinstance(clean, torch.Tensor) else list(clean)
        clean_var = _norm_input_vars(layers, lambda: head(clean))
        deg_var = _norm_input_vars(
            layers, lambda: plugin.segment_degraded(student, x_t, tt))
    stats = dict(
        fused_ratio=float(np.mean([(f.norm() / z.norm()).item()
                                   for f, z in zip(fused, g_t)])),
        h_in_std_ratio=float(np.mean([(f.std() / c.std()).item()
                                      for f, c in zip(fused, clean)])))
    running = [m.running_var.float().mean().item() for m in layers
               if getattr(m, 'running_var', None) is not None]
    stats['h_norm_var_ratio'] = float(np.mean(
        [d / c for d, c in zip(deg_var, clean_var)])) if layers else float('nan')
    stats['h_running_var_ratio'] = float(np.mean(
        [r / c for r, c in zip(running, clean_var)])) if running else float('nan')
    return stats


@HOOKS.register_module()
class DiDAHook(Hook):
    """Initialise, watch and export a DiDA run.

    Args:
        vis_interval: Write an x_t strip and the degraded path's predictions of it
            every this many iterations (0: never).
        vis_timesteps: The t of the strip (default: 0, 24, 49, 74, 99).
        diag_interval: Measure the degraded path (:func:`degraded_path_stats`) every
            this many iterations (0: never).
        diag_timesteps: The t at which it is measured (default: 0, 50, 90).
        save_deploy: Write the deployable checkpoint and config after training.
        deploy_name: File stem of the deployable checkpoint in the work dir.
    """

    priority = 'NORMAL'
    training_only = True  # dropped from deployed configs (deploy_config)

    def __init__(self, vis_interval: int = 4000,
                 vis_timesteps: Sequence[int] = (0, 24, 49, 74, 99),
                 diag_interval: int = 1000,
                 diag_timesteps: Sequence[int] = (0, 50, 90),
                 save_deploy: bool = True, deploy_name: str = 'deploy'):
        for name, value in (('vis_interval', vis_interval),
                            ('diag_interval', diag_interval)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f'DiDAHook: {name} must be an int >= 0, '
                                 f'got {value!r}')
        self.vis_interval = vis_interval
        self.vis_timesteps = tuple(int(t) for t in vis_timesteps)
        self.diag_interval = diag_interval
        self.diag_timesteps = tuple(int(t) for t in diag_timesteps)
        self.save_deploy = save_deploy
        self.deploy_name = deploy_name

    @staticmethod
    def _model(runner) -> nn.Module:
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    @staticmethod
    def _plugin(model: nn.Module) -> Optional[DiDA]:
        for p in getattr(model, 'plugins', []):
            if isinstance(p, DiDA):
                return p
        return None

    def before_train(self, runner) -> None:
        model = self._model(runner)
        plugin = self._plugin(model)
        if plugin is None:
            runner.logger.warning('DiDAHook: the model has no DiDA plug-in')
            return
        if runner.iter == 0:
            for name, enc in model.named_modules():
                if (isinstance(enc, DiffusionEncoder) and enc.mode == 'full'
                        and not enc.g_prime_synced):
                    enc.sync_g_prime()
                    runner.logger.info(f"DiDAHook: initialised g' from g in {name} "
                                       '(its init_weights had not run)')
        deg = plugin.degradation
        table = ', '.join(f'{t}: {deg.abar[t].item():.4f}'
                          for t in self.vis_timesteps if t < deg.num_timesteps)
        runner.logger.info(f'DiDA degradation: kind={deg.kind}, '
                           f'schedule={deg.schedule}, T={deg.num_timesteps}, '
                           f'abar_t at t = {table}')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if data_batch is None:
            return
        if self.diag_interval and self.every_n_train_iters(runner, self.diag_interval):
            self._diagnose(runner, data_batch)
        if not self.vis_interval or not self.every_n_train_iters(
                runner, self.vis_interval):
            return
        model = self._model(runner)
        plugin = self._plugin(model)
        if plugin is None:
            return
        preproc = getattr(model, 'student', model).data_preprocessor
        src = data_batch['source']
        data = preproc(dict(inputs=[src['inputs'][0]], data_samples=None), False)
        mean = getattr(preproc, 'mean', None)
        std = getattr(preproc, 'std', None)
        if mean is None:
            mean, std = torch.zeros(3), torch.ones(3)
        strip = degradation_strip(plugin, data['inputs'][0], mean.flatten(),
                                  std.flatten(), self.vis_timesteps)
        runner.visualizer.add_image('dida_x_t', strip, step=runner.iter + 1)
        student = getattr(model, 'student', None)
        if student is not None and isinstance(student.backbone, DiffusionEncoder):
            x_t, t = strip_inputs(plugin, data['inputs'][0], self.vis_timesteps)
            pred = degraded_prediction_strip(plugin, student, x_t, t)
            runner.visualizer.add_image('dida_x_t_pred', pred, step=runner.iter + 1)

    def _diagnose(self, runner, data_batch: dict) -> None:
        model = self._model(runner)
        plugin = self._plugin(model)
        student = getattr(model, 'student', None)
        if plugin is None or student is None or not isinstance(
                student.backbone, DiffusionEncoder):
            return
        x0 = torch.cat([student.data_preprocessor(data_batch[half], False)['inputs']
                        for half in ('source', 'target') if half in data_batch])
        # The same draws at every measurement, from a generator of the hook's own.
        gen = torch.Generator(device=x0.device).manual_seed(0)
        scalars = {}
        for t in self.diag_timesteps:
            stats = degraded_path_stats(plugin, student, x0, t, gen)
            scalars.update({f'diag/{k}_t{t}': v for k, v in stats.items()})
        runner.visualizer.add_scalars(scalars, step=runner.iter + 1)
        runner.logger.info('DiDA degraded path: ' + '  '.join(
            f'{k[5:]}={v:.3f}' for k, v in scalars.items()))

    @master_only
    def after_train(self, runner) -> None:
        if not self.save_deploy:
            return
        ckpt, cfg = save_deployable(self._model(runner), runner.cfg,
                                    runner.work_dir, self.deploy_name)
        runner.logger.info(f'DiDAHook: deployable segmentor written to {ckpt} '
                           f'(config {cfg})')

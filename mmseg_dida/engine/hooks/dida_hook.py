"""DiDAHook: the parts of DiDA's lifecycle the runner should not have to know about.

* before training (iteration 0 only, never on resume): make sure the diffusion encoder
  g' starts from g's weights once g's pretrained weights are loaded (the
  DiffusionEncoder does this in ``init_weights``; the hook covers models whose
  ``init_weights`` was not run), and log the degradation schedule;
* every ``vis_interval`` iterations: write one source image degraded at several t
  (x_t, Eq. 1) to the visualiser;
* after training: write a deployable checkpoint -- the plain segmentor h o g, with
  g', the time MLP/FiLMs, h', the EMA teacher and the ImageNet model stripped -- and
  its plain mmseg config (see :func:`save_deployable`).
"""
import os.path as osp
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS
from torch import nn

from ...models.backbones.diffusion_encoder import DiffusionEncoder
from ...models.uda.dida import DiDA, deploy_config, deploy_segmentor

__all__ = ['DiDAHook', 'save_deployable', 'degradation_strip']


def save_deployable(model: nn.Module, cfg: Optional[Config], out_dir: str,
                    name: str = 'deploy') -> Tuple[str, Optional[str]]:
    """Write ``<out_dir>/<name>.pth`` (``{'meta': ..., 'state_dict': ...}`` of the
    deployed segmentor, loadable by mmseg's ``init_model``/``load_from``) and, when a
    config is given, ``<out_dir>/<name>_config.py`` (plain mmseg segmentor config).
    Works for baseline UDA runs (no DiffusionEncoder) and DiDA runs alike."""
    segmentor = deploy_segmentor(model)
    state = {k: v.detach().cpu() for k, v in segmentor.state_dict().items()}
    meta = dict(num_params=sum(p.numel() for p in segmentor.parameters()),
                dataset_meta=getattr(model, 'dataset_meta', None))
    cfg_path = None
    if cfg is not None:
        plain = deploy_config(cfg)
        cfg_path = osp.join(out_dir, f'{name}_config.py')
        plain.dump(cfg_path)
        meta['config'] = plain.pretty_text
    ckpt_path = osp.join(out_dir, f'{name}.pth')
    torch.save(dict(meta=meta, state_dict=state), ckpt_path)
    return ckpt_path, cfg_path


@torch.no_grad()
def degradation_strip(plugin: DiDA, image: torch.Tensor, mean: torch.Tensor,
                      std: torch.Tensor, timesteps: Sequence[int]) -> np.ndarray:
    """One normalised image (3, H, W) degraded at each t of ``timesteps`` with the
    same eps, de-normalised and laid side by side: (H, W * len(timesteps), 3) uint8."""
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
    img = (x_t * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)).clamp(0, 255)
    img = torch.cat(list(img), dim=2)  # (3, H, W * k)
    return img.permute(1, 2, 0).round().byte().cpu().numpy()


@HOOKS.register_module()
class DiDAHook(Hook):
    """Initialise, watch and export a DiDA run.

    Args:
        vis_interval: Write an x_t strip every this many iterations (0: never).
        vis_timesteps: The t of the strip (default: 0, 24, 49, 74, 99).
        save_deploy: Write the deployable checkpoint and config after training.
        deploy_name: File stem of the deployable checkpoint in the work dir.
    """

    priority = 'NORMAL'

    def __init__(self, vis_interval: int = 4000,
                 vis_timesteps: Sequence[int] = (0, 24, 49, 74, 99),
                 save_deploy: bool = True, deploy_name: str = 'deploy'):
        if vis_interval < 0:
            raise ValueError('DiDAHook: vis_interval must be >= 0, '
                             f'got {vis_interval}')
        self.vis_interval = vis_interval
        self.vis_timesteps = tuple(int(t) for t in vis_timesteps)
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
                        and enc.init_g_prime == 'backbone'
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
        if not self.vis_interval or not self.every_n_train_iters(
                runner, self.vis_interval) or data_batch is None:
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

    @master_only
    def after_train(self, runner) -> None:
        if not self.save_deploy:
            return
        ckpt, cfg = save_deployable(self._model(runner), runner.cfg,
                                    runner.work_dir, self.deploy_name)
        runner.logger.info(f'DiDAHook: deployable segmentor written to {ckpt} '
                           f'(config {cfg})')

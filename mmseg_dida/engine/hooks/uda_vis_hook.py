"""UDAVisualizationHook: pictures of what a self-training step sees.

Every ``interval`` iterations the hook asks the UDA model to keep the named images of
the next step (it sets ``model.vis_images = {}`` before the step; the host fills it,
and so may every plug-in through ``UDAStepContext.vis_images``), draws them after the
step and hands one panel to the runner's visualiser, so every configured backend
(``LocalVisBackend``: PNG under ``<work_dir>/<timestamp>/vis_data/vis_image``,
``TensorboardVisBackend``: the run's event file) receives it. Between those steps
nothing is kept.

What DACS keeps (DAFormer): the source images and labels, the target images, the
teacher's pseudo labels, their per-pixel confidence (max softmax) and the pixel
weights q^T of L_T (with ignored rows), the ClassMix-ed, strongly augmented image and
its mixed label. A plug-in adds its own (MIC: masks). DiDA's degraded images at
several t and the degraded-path predictions are drawn by :class:`DiDAHook`.
"""
from typing import Dict, List

import numpy as np
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS
from torch import Tensor

from ...utils.visualization import panel, to_tiles

__all__ = ['UDAVisualizationHook']

#: Drawn first, in this order; other names follow sorted.
KNOWN_ORDER = ('src_img', 'src_label', 'tgt_img', 'pseudo_label', 'pseudo_confidence',
               'pseudo_weight', 'mix_img', 'mix_label', 'mic_img', 'mic_mask')


@HOOKS.register_module()
class UDAVisualizationHook(Hook):
    """Draw the named images of a UDA step every ``interval`` iterations.

    Args:
        interval: Every this many training iterations (0: never).
        max_images: Images of the batch drawn (rows of the panel).
        name: The visualiser's image name (``<name>`` at step ``iteration``).
    """

    priority = 'LOW'
    training_only = True  # dropped from deployed configs (deploy_config)

    def __init__(self, interval: int = 1000, max_images: int = 2,
                 name: str = 'uda_step'):
        if not isinstance(interval, int) or interval < 0:
            raise ValueError('UDAVisualizationHook: interval must be an int >= 0, '
                             f'got {interval!r}')
        if not isinstance(max_images, int) or max_images < 1:
            raise ValueError('UDAVisualizationHook: max_images must be an int >= 1, '
                             f'got {max_images!r}')
        self.interval = interval
        self.max_images = max_images
        self.name = name

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def _due(self, runner) -> bool:
        return bool(self.interval) and self.every_n_train_iters(runner, self.interval)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model = self._model(runner)
        if not hasattr(model, 'vis_images'):
            return
        model.vis_images = {} if self._due(runner) else None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        model = self._model(runner)
        images = getattr(model, 'vis_images', None)
        if images is None:
            return
        model.vis_images = None  # keep nothing beyond this step
        if not images:
            return
        picture = self.draw(images, model)
        runner.visualizer.add_image(self.name, picture, step=runner.iter + 1)

    def draw(self, images: Dict[str, Tensor], model) -> np.ndarray:
        """One RGB panel: a column per named entry, a row per image."""
        preproc = getattr(getattr(model, 'student', model), 'data_preprocessor', None)
        mean = getattr(preproc, 'mean', None)
        std = getattr(preproc, 'std', None)
        columns = {n: to_tiles(images[n], mean, std, self.max_images)
                   for n in self.names(images)}
        return panel(columns)

    @staticmethod
    def names(images: Dict[str, Tensor]) -> List[str]:
        """The entries' names in drawing order."""
        return [n for n in KNOWN_ORDER if n in images] + sorted(
            n for n in images if n not in KNOWN_ORDER)

"""The runner tools/train.py and tools/test.py build: mmengine's, with two changes.

* Its terminal shows the run (:mod:`mmseg_dida.utils.console`): the dumps go to the
  log file only.
* ``load_from`` without ``--resume`` (a new run that starts from a checkpoint's
  weights) goes through the project's loader
  (:func:`~mmseg_dida.deploy.model_loading.load_model_weights`): every tensor the
  deployed model needs must come from the checkpoint, in any of the layouts it maps
  (the same model; a plain segmentor, e.g. ``deploy.pth``, into a UDA model's student;
  the student of another method's run, e.g. a DAFormer run into DAFormer + DiDA), and
  the parts that copy the student are copied again from the loaded weights (DiDA's g'
  from g; the EMA teacher copies the student at the first step anyway). mmengine's
  own loading matched names only: a DAFormer run's checkpoint loaded nothing of the
  encoder into DAFormer + DiDA, silently.
"""
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..deploy.model_loading import load_model_weights
from ..models.backbones.diffusion_encoder import DiffusionEncoder
from ..utils.console import attach_console_filter

__all__ = ['UDARunner', 'load_initial_weights']


def load_initial_weights(model, checkpoint: str, logger=None):
    """A new run's start from ``checkpoint``'s weights (``load_from``): the project's
    strict loader, then DiDA's g' copied from the loaded g when the checkpoint had no
    g' of it (another layout). Returns the load report."""
    report = load_model_weights(model, checkpoint, strict=True, logger=logger)
    if report.layout != 'same':
        for module in model.modules():
            if isinstance(module, DiffusionEncoder):
                module.sync_g_prime()
    return report


@RUNNERS.register_module()
class UDARunner(Runner):
    """mmengine's Runner with a quiet terminal and the project's ``load_from``."""

    def build_logger(self, *args, **kwargs):
        return attach_console_filter(super().build_logger(*args, **kwargs))

    def load_or_resume(self) -> None:
        if self._has_loaded or self._resume or self._load_from is None:
            return super().load_or_resume()
        model = self.model.module if is_model_wrapper(self.model) else self.model
        report = load_initial_weights(model, self._load_from, logger=self.logger)
        self.logger.info(f'load_from: {report.loaded} tensors of {self._load_from} '
                         f'(layout {report.layout}); training starts at iteration 0')
        self._has_loaded = True

"""Validation and test over several datasets at once (e.g. target val and source val).

The runner's own ``val_dataloader``/``val_evaluator`` stay the primary pair: their
metrics keep their plain names (``mIoU``), so ``CheckpointHook(save_best='mIoU')`` and
every tool that reads them keep working. Each extra pair reports its metrics as
``<name>/<metric>`` (e.g. ``source/mIoU``)::

    val_cfg = dict(
        type='MultiValLoop',
        extra=dict(source=dict(dataloader=source_val_dataloader,
                               evaluator=dict(type='IoUMetric'))))
"""
from typing import Dict, Optional

import torch
from mmengine.runner import TestLoop, ValLoop
from mmengine.runner.amp import autocast
from mmseg.registry import LOOPS


class _ExtraEvaluation:
    """The extra (dataloader, evaluator) pairs of a multi-dataset loop."""

    def _build_extra(self, runner, extra: Optional[Dict], fp16: bool):
        self.extra = {}
        for name, cfg in (extra or {}).items():
            if set(cfg) != {'dataloader', 'evaluator'}:
                raise KeyError(
                    f"extra['{name}'] of the multi-dataset loop needs exactly the "
                    f"keys 'dataloader' and 'evaluator', got {sorted(cfg)}")
            dataloader = cfg['dataloader']
            if isinstance(dataloader, dict):
                dataloader = runner.build_dataloader(
                    dataloader, seed=runner.seed, diff_rank_seed=False)
            evaluator = runner.build_evaluator(cfg['evaluator'])
            evaluator.dataset_meta = getattr(dataloader.dataset, 'metainfo', None)
            self.extra[name] = (dataloader, evaluator)
        self.fp16 = fp16

    def _run_all(self, mode: str) -> dict:
        """The parent loop's run (``mode`` 'val' or 'test'), then the extra datasets;
        all metrics go to the ``after_<mode>_epoch`` hooks together."""
        losses = getattr(self, f'{mode}_loss')
        self.runner.call_hook(f'before_{mode}')
        self.runner.call_hook(f'before_{mode}_epoch')
        self.runner.model.eval()
        losses.clear()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        metrics.update(self._evaluate_extra(f'{mode}_step'))
        self.runner.call_hook(f'after_{mode}_epoch', metrics=metrics)
        self.runner.call_hook(f'after_{mode}')
        return metrics

    @torch.no_grad()
    def _evaluate_extra(self, step: str) -> dict:
        metrics = {}
        model = self.runner.model
        for name, (dataloader, evaluator) in self.extra.items():
            for data_batch in dataloader:
                with autocast(enabled=self.fp16):
                    outputs = getattr(model, step)(data_batch)
                evaluator.process(data_samples=outputs, data_batch=data_batch)
            result = evaluator.evaluate(len(dataloader.dataset))
            metrics.update({f'{name}/{k}': v for k, v in result.items()})
        return metrics


@LOOPS.register_module()
class MultiValLoop(ValLoop, _ExtraEvaluation):
    """:class:`ValLoop` that also evaluates the ``extra`` datasets."""

    def __init__(self, runner, dataloader, evaluator, extra=None, fp16=False):
        super().__init__(runner, dataloader, evaluator, fp16)
        self._build_extra(runner, extra, fp16)

    def run(self) -> dict:
        return self._run_all('val')


@LOOPS.register_module()
class MultiTestLoop(TestLoop, _ExtraEvaluation):
    """:class:`TestLoop` that also evaluates the ``extra`` datasets."""

    def __init__(self, runner, dataloader, evaluator, extra=None, fp16=False):
        super().__init__(runner, dataloader, evaluator, fp16)
        self._build_extra(runner, extra, fp16)

    def run(self) -> dict:
        return self._run_all('test')

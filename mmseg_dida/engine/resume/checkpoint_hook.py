"""ResumableCheckpointHook: mmengine's CheckpointHook made crash-safe and exact.

Crash safety (local work dirs):

* the checkpoint file is complete or absent: mmengine's ``save_checkpoint`` writes
  through a temporary file + fsync + rename (:mod:`.checkpoint_io`);
* an old checkpoint (``max_keep_ckpts``, the previous best) is deleted only after the
  new one is complete, and ``last_checkpoint`` (rewritten atomically) always names a
  complete file. A kill at any moment leaves a checkpoint ``--resume`` can use
  (``--resume`` also falls back to the newest complete one: :mod:`.discovery`).

Exact resume (:mod:`mmseg_dida.engine.resume.state`): every checkpoint carries, for
each rank, the process random states (python, numpy, torch) and the state of every
module or dataset with its own generator; EMA teacher, plug-ins and optimiser are in
the model/optimiser state already. On ``--resume`` the data position is restored
without loading the skipped batches when the loader runs in the main process
(``num_workers=0``) over an ``InfiniteSampler``; with worker processes, whose random
streams no checkpoint can hold, the skipped batches are replayed through fresh
workers (mmengine's behaviour). The random states are restored right before the
first batch after the skipped ones is drawn. A validation does not consume the
training run's random numbers (the process states are restored after it), so a run
is the same with or without validations in between.

It is the ``checkpoint`` default hook of every schedule
(``configs/_base_/schedules/default_hooks.py``; a config that sets a plain
``CheckpointHook`` there gets mmengine's saves, without exact resume); its arguments
are CheckpointHook's, plus ``time_interval``.
"""
import collections
import itertools
import os
import os.path as osp
import time
from typing import Optional

import torch
from mmengine.dist import all_gather_object, broadcast, get_dist_info, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.runner import BaseLoop, IterBasedTrainLoop
from mmseg.registry import HOOKS

from ...utils.atomic_files import atomic_write_text
from . import state as resume_state

__all__ = ['ResumableCheckpointHook']


class _DeferredRemovals:
    """A file backend whose ``remove``/``rmtree`` calls are recorded, not run."""

    def __init__(self, backend, removals: list):
        self._backend = backend
        self._removals = removals

    def remove(self, path):
        self._removals.append(('remove', path))

    def rmtree(self, path):
        self._removals.append(('rmtree', path))

    def __getattr__(self, name):
        return getattr(self._backend, name)


class _ResumingIterator:
    """Stands in for the train loop's data iterator while the loop skips the
    ``skip`` batches already trained: they are dropped without loading (``fast``) or
    drawn and dropped (replay). ``on_resume`` runs before the next batch is drawn."""

    def __init__(self, inner, skip: int, fast: bool, on_resume):
        self._inner, self._skip, self._fast = inner, skip, fast
        self._on_resume = on_resume

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip > 0:
            self._skip -= 1
            return None if self._fast else next(self._inner)
        if self._on_resume is not None:
            callback, self._on_resume = self._on_resume, None
            callback()
        return next(self._inner)


def _train_dataloader(runner):
    loop = runner.train_loop
    return getattr(loop, 'dataloader', None)


def _index_sampler(loader):
    batch_sampler = getattr(loader, 'batch_sampler', None)
    if batch_sampler is not None:
        return getattr(batch_sampler, 'sampler', None), batch_sampler.batch_size
    return loader.sampler, loader.batch_size


@HOOKS.register_module()
class ResumableCheckpointHook(CheckpointHook):
    """CheckpointHook with atomic files, delete-after-write, the resume state (random
    states per rank, stateful generators) in every checkpoint, and an optional
    checkpoint by time.

    Args:
        time_interval: Minutes. When set, a checkpoint is also written after the first
            iteration that ends that long after the last save (of either kind), as
            ``timed_iter_<n>.pth``: complete or absent like the interval ones, named
            by ``last_checkpoint``, found by ``--resume``; only the newest timed copy is
            kept, and it is removed once an interval checkpoint is newer. A hard kill
            (SIGKILL, a node crash) then loses at most about ``time_interval``
            minutes of training. None (default): interval checkpoints only.
        *args, **kwargs: those of :class:`mmengine.hooks.CheckpointHook`.
    """

    _save_state: Optional[list] = None  # gathered for the checkpoint being written
    _loaded_state: Optional[list] = None  # from the checkpoint resumed
    _val_rng: Optional[dict] = None  # the process random states before a validation
    TIMED_PREFIX = 'timed_'

    def __init__(self, *args, time_interval: Optional[float] = None, **kwargs):
        super().__init__(*args, **kwargs)
        if time_interval is not None and not (
                isinstance(time_interval, (int, float)) and time_interval > 0):
            raise ValueError('ResumableCheckpointHook: time_interval must be a number '
                             f'of minutes > 0 or None, got {time_interval!r}')
        if time_interval is not None and self.by_epoch:
            raise ValueError('ResumableCheckpointHook: time_interval needs an '
                             'iteration-based schedule (by_epoch=False)')
        self.time_interval = time_interval
        self._last_save = time.monotonic()

    # ------------------------------------------------------------ by time
    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self.time_interval is not None and not self._local():
            raise ValueError('ResumableCheckpointHook: time_interval writes to a local '
                             'work dir only (it prunes its older copy there)')
        self._last_save = time.monotonic()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        saves = self.last_ckpt
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if self.time_interval is None or self.last_ckpt != saves or \
                self.is_last_train_iter(runner):
            return
        due = time.monotonic() - self._last_save >= 60.0 * self.time_interval
        if get_dist_info()[1] > 1:  # every rank saves, or none: rank 0 decides
            flag = torch.tensor([float(due)])
            broadcast(flag, 0)
            due = bool(flag.item())
        if due:
            self._save_timed(runner)

    def _save_timed(self, runner) -> None:
        step = runner.iter + 1
        self._save_state = self._gather_state(runner)
        filename = self.TIMED_PREFIX + self.filename_tmpl.format(step)
        path = osp.join(self.out_dir, filename)
        runner.save_checkpoint(
            self.out_dir, filename, self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=dict(timed=True),
            by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        self._save_state = None
        self._last_save = time.monotonic()
        if is_main_process():
            atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), path)
            self._remove_timed(keep=path)
        runner.logger.info(f'time_interval: checkpoint {path} written ({self.time_interval} '
                           'min since the last save)')

    def _remove_timed(self, keep: Optional[str] = None) -> None:
        """Delete the timed checkpoints of the work dir other than ``keep``."""
        if not osp.isdir(self.out_dir):
            return
        for name in os.listdir(self.out_dir):
            path = osp.join(self.out_dir, name)
            if name.startswith(self.TIMED_PREFIX) and name.endswith('.pth') and \
                    path != keep:
                os.remove(path)

    # ------------------------------------------------------------------ saving
    def _local(self) -> bool:
        return isinstance(getattr(self, 'file_backend', None), (LocalBackend,
                                                                _DeferredRemovals))

    def _gather_state(self, runner) -> list:
        """Every rank's resume state, on every rank (a collective call)."""
        loader = _train_dataloader(runner)
        state = resume_state.capture(
            runner.model, getattr(loader, 'dataset', None), process_state=self._val_rng)
        state['iter'] = runner.iter
        return all_gather_object(state)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._save_state is not None:
            checkpoint['resume_state'] = self._save_state
            self._save_state = None

    def _save_checkpoint_with_step(self, runner, step, meta):
        self._save_state = self._gather_state(runner)
        if not self._local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        stale = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, filename, self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta,
            by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        self._save_state = None
        if not is_main_process():
            return
        # The new checkpoint is complete (atomic write); now name it, then prune.
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        self._last_save = time.monotonic()
        if self.time_interval is not None:
            self._remove_timed()  # older than this one
        for old in stale:
            path = osp.join(self.out_dir, self.filename_tmpl.format(old))
            if path != self.last_ckpt and osp.isfile(path):
                os.remove(path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not self._local():
            return super()._save_best_checkpoint(runner, metrics)
        backend, removals = self.file_backend, []
        self.file_backend = _DeferredRemovals(backend, removals)
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            self.file_backend = backend
        keep = {getattr(self, 'best_ckpt_path', None), self.last_ckpt,
                *getattr(self, 'best_ckpt_path_dict', {}).values()}
        for kind, path in removals:
            if path not in keep:
                getattr(backend, kind)(path)

    # ----------------------------------------------------------------- resuming
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # load_checkpoint serves both --resume and load_from; only a resume
        # continues the random streams.
        self._loaded_state = (checkpoint.get('resume_state')
                              if getattr(runner, '_resume', False) else None)
        if getattr(runner, '_resume', False) and self._loaded_state is None:
            runner.logger.warning(
                'the checkpoint carries no random states (written without '
                'ResumableCheckpointHook): the resumed run continues, but not '
                'bit-identically to an uninterrupted one')

    def before_train_epoch(self, runner) -> None:
        states, self._loaded_state = self._loaded_state, None
        if states is None:
            return
        rank, world = get_dist_info()
        if len(states) != world:
            runner.logger.warning(
                f'the checkpoint was written by {len(states)} processes, this run has '
                f'{world}: random states not restored (the run continues, not '
                'bit-identically)')
            return
        state = states[rank]
        loop = runner.train_loop
        loader = _train_dataloader(runner)
        if not isinstance(loop, IterBasedTrainLoop) or runner.iter == 0:
            self._restore(runner, state, loader, 0)
            return
        sampler, batch_size = _index_sampler(loader)
        fast = (getattr(loader, 'num_workers', 1) == 0
                and hasattr(getattr(sampler, 'indices', None), '__next__'))
        skip = runner.iter

        def on_resume():
            if fast:  # the sampler's position: `skip` batches of indices
                collections.deque(itertools.islice(sampler.indices, skip * batch_size),
                                  maxlen=0)
            self._restore(runner, state, loader, skip, fast)

        loop.dataloader_iterator = _ResumingIterator(loop.dataloader_iterator, skip,
                                                     fast, on_resume)

    def _restore(self, runner, state, loader, skipped: int, fast: bool = True) -> None:
        restored, unmatched = resume_state.restore(state, runner.model,
                                                   getattr(loader, 'dataset', None))
        how = ('without loading them' if fast else
               'by loading them again (dataloader workers)')
        msg = (f'resume: random states of rank {get_dist_info()[0]} restored (python, '
               f"numpy, torch{', ' if restored else ''}{', '.join(restored)}); "
               f'{skipped} trained batches skipped {how}')
        runner.logger.info(msg)
        if unmatched:
            runner.logger.warning(
                f'resume: generators without a counterpart (config changed?): '
                f'{unmatched}; the run continues, not bit-identically')

    # --------------------------------------------------------------- validation
    def before_val(self, runner) -> None:
        training = isinstance(getattr(runner, '_train_loop', None), BaseLoop)
        if training and self._val_rng is None:
            self._val_rng = resume_state.process_rng_state()

    def after_val(self, runner) -> None:
        if self._val_rng is not None:
            resume_state.set_process_rng_state(self._val_rng)
            self._val_rng = None

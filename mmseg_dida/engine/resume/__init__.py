"""Exact resume and graceful stop: everything a run needs to continue where it stopped.

What is saved, and when. Every checkpoint (``iter_<n>.pth``, written by
:class:`ResumableCheckpointHook`, the ``checkpoint`` default hook the schedules in
``configs/_base_/schedules/`` declare) holds the weights, optimiser and schedulers as
mmengine's do, plus the training state of :mod:`.state`: each rank's python, numpy and
torch random states and the state of every module or dataset with its own generator
(DiDA's t and eps, the UDA pairing). It is written completely or not at all
(:mod:`.checkpoint_io` makes mmengine's ``save_checkpoint`` write through
:func:`mmseg_dida.utils.atomic_files.atomic_torch_save`), the old one is deleted only
after the new one is complete, and ``last_checkpoint`` is rewritten atomically. The
hook saves every ``interval`` iterations and, with ``time_interval`` (minutes), also
whenever that much time has passed since the last save, keeping only the newest such
timed checkpoint beside the interval ones: a hard kill (SIGKILL, a node crash) then
loses at most that much work.

What a stop does. :class:`GracefulStopHook` (the ``graceful_stop`` default hook) turns
SIGTERM, SIGINT and SIGUSR1 into a stop after the current iteration: every rank stops
after the same one, a checkpoint of it is written by the checkpoint hook, and
``tools/train.py`` exits with :data:`STOP_EXIT_STATUS` (75) and one line
(:func:`stop_message`).

How it is found again. ``tools/train.py --resume`` continues from
:func:`choose_resume_checkpoint` (:mod:`.discovery`): ``load_from`` if given, else the
file ``last_checkpoint`` names when it is complete, else the newest complete
checkpoint of the work dir (a truncated file is skipped, and said so). The hook then
restores the random states right before the first batch after the skipped ones, so a
resumed run ends bit for bit where the uninterrupted one ends.
"""
from .checkpoint_hook import ResumableCheckpointHook
from .discovery import (
                        ResumeError,
                        choose_resume_checkpoint,
                        find_resume_checkpoint,
                        resume_candidates,
)
from .graceful_stop import STOP_EXIT_STATUS, GracefulStopHook, TrainingStopped, stop_message

__all__ = ['ResumableCheckpointHook', 'GracefulStopHook', 'TrainingStopped',
           'STOP_EXIT_STATUS', 'stop_message', 'choose_resume_checkpoint',
           'find_resume_checkpoint', 'resume_candidates', 'ResumeError']

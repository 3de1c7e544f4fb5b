"""GracefulStopHook: a stop signal ends training after the current iteration, with a
checkpoint of that iteration; ``tools/train.py`` then exits with status 75.

SIGTERM is what a scheduler sends before it kills a job (Slurm on preemption, at the
time limit and on ``scancel``; Kubernetes; most others), SIGUSR1 what Slurm sends
ahead of the time limit when asked to (``--signal``, see ``tools/slurm_train.sh``),
SIGINT is Ctrl-C.

* The signal handler only records the signal. After each training iteration the
  hook reads the record; with several processes the records are all-reduced (max,
  one collective per iteration), so every rank stops after the same iteration, also
  when the signal reached only one of them.
* The checkpoint of that iteration is written by the run's checkpoint hook, exactly
  as an interval checkpoint (:class:`ResumableCheckpointHook`: complete or absent,
  every rank's random states, the data position), so resuming from it is exact.
  When the checkpoint hook has just written it (an interval iteration) it is not
  written twice.
* Further signals are ignored: nothing is interrupted, the save included. Once the
  stop is decided the signals are set to SIG_IGN, which Python keeps while it shuts
  down (a handler it resets): a launcher that ends the other ranks with SIGTERM as
  soon as one has exited (torchrun, srun ``--kill-on-bad-exit``) does not turn a
  stopped rank into a killed one.
* :class:`TrainingStopped` then ends the run (no validation, no after-training hooks
  such as the deployable model's export); ``tools/train.py`` prints its one line and
  exits with :data:`STOP_EXIT_STATUS` (75, ``EX_TEMPFAIL`` of sysexits.h: "try
  again"). A signal during the last iteration lets the run finish normally.
* A scheduler signals every process of a job, dataloader workers included, and a
  worker that dies makes the main process fail in the middle of its stop. The
  handlers are installed when the hook is built, before the runner starts its workers
  (``fork``), so the workers inherit them: SIGINT and SIGUSR1 are ignored once, then
  default. torch sets its own SIGTERM handler in a worker, so forked children block
  SIGTERM and a thread waits for it (:func:`_shield_forked_child`): from the parent
  (which ends its workers with SIGTERM when it must) it ends the child quietly, as
  torch's handler does; from anyone else it is ignored.

The schedules declare it as ``default_hooks.graceful_stop``
(``configs/_base_/schedules/default_hooks.py``; None switches it off)::

    --cfg-options "default_hooks.graceful_stop.signals=['SIGTERM']"
"""
import os
import os.path as osp
import signal
import threading
from typing import Dict, Optional, Sequence

import torch
from mmengine.dist import all_reduce, get_dist_info
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import IterBasedTrainLoop
from mmseg.registry import HOOKS

__all__ = ['GracefulStopHook', 'TrainingStopped', 'STOP_EXIT_STATUS', 'stop_message']

STOP_EXIT_STATUS = 75  # sysexits.h EX_TEMPFAIL: stopped, resumable with --resume


def stop_message(signal_name: str, step: int, max_iters: int,
                 checkpoint: Optional[str]) -> str:
    """The one line a stopped training prints (after the config's name)."""
    where = (f'checkpoint {checkpoint} written, continue with --resume' if checkpoint
             else 'no checkpoint written (no iteration-based checkpoint hook)')
    return (f'stopped by {signal_name} after iteration {step} of {max_iters}: {where} '
            f'(exit status {STOP_EXIT_STATUS})')
_UNCATCHABLE = ('SIGKILL', 'SIGSTOP')


_shielding = False  # forked children shield themselves from SIGTERM (a stop hook is live)


def _shield_forked_child() -> None:
    """In a child just forked (a dataloader worker): block SIGTERM, and end the child
    on a SIGTERM from its parent only (a thread waits for it)."""
    if not _shielding:
        return
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait():
        while True:
            if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
                os._exit(0)

    threading.Thread(target=wait, name='sigterm-from-parent', daemon=True).start()


os.register_at_fork(after_in_child=_shield_forked_child)


class TrainingStopped(Exception):
    """Training stopped on a signal (after its checkpoint was written); one line."""


def _signal_number(name) -> signal.Signals:
    num = getattr(signal, name, None) if isinstance(name, str) else None
    if not isinstance(num, signal.Signals) or name in _UNCATCHABLE:
        raise ValueError(f'GracefulStopHook: signals are names of catchable signals such '
                         f"as 'SIGTERM', 'SIGINT', 'SIGUSR1', got {name!r}")
    return num


@HOOKS.register_module()
class GracefulStopHook(Hook):
    """Stop after the current iteration on a signal, with a checkpoint of it.

    Args:
        signals: Names of the signals that stop the run. Default SIGTERM, SIGINT,
            SIGUSR1.
    """

    priority = 'LOWEST'  # after the checkpoint hook (VERY_LOW) of the same iteration
    training_only = True  # a test or a deployed config keeps the default signals

    def __init__(self, signals: Sequence[str] = ('SIGTERM', 'SIGINT', 'SIGUSR1')):
        if isinstance(signals, str) or not signals:
            raise ValueError('GracefulStopHook: signals is a non-empty list of signal '
                             f'names, got {signals!r}')
        self.signals = tuple(_signal_number(name) for name in signals)
        self.received: Optional[int] = None  # the first signal, in this process
        self._owner = os.getpid()
        self._previous: Dict[int, object] = {}
        self._stopping = False
        if threading.current_thread() is threading.main_thread():
            for num in self.signals:
                self._previous[num] = signal.signal(num, self._handle)
            self._shield(signal.SIGTERM in self.signals)

    @staticmethod
    def _shield(on: bool) -> None:
        global _shielding
        _shielding = on

    # ------------------------------------------------------------ signals
    def _handle(self, signum, frame) -> None:
        if os.getpid() != self._owner:  # a forked dataloader worker
            signal.signal(signum, signal.SIG_DFL)
            return
        if self.received is None:
            self.received = signum

    def restore_signals(self) -> None:
        """Put back the handlers that were in place before the hook was built."""
        for num, previous in self._previous.items():
            signal.signal(num, signal.SIG_DFL if previous is None else previous)
        if self._previous:
            self._shield(False)
        self._previous = {}

    def before_train(self, runner) -> None:
        if not self._previous:
            runner.logger.warning('GracefulStopHook: built outside the main thread, '
                                  'signals stop this run without a checkpoint')

    def after_run(self, runner) -> None:
        if not self._stopping:
            self.restore_signals()

    # ------------------------------------------------------------ stopping
    def _agreed_signal(self) -> int:
        """The signal every rank stops on (0: none), one collective with several."""
        signum = self.received or 0
        if get_dist_info()[1] > 1:
            flag = torch.tensor([float(signum)])
            all_reduce(flag, op='max')
            signum = int(flag.item())
        return signum

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        signum = self._agreed_signal()
        if not signum or self.is_last_train_iter(runner):
            return
        self._stopping = True
        for num in self._previous:
            signal.signal(num, signal.SIG_IGN)
        step = runner.iter + 1
        name = signal.Signals(signum).name
        path = self._save(runner, step, name)
        raise TrainingStopped(stop_message(name, step, runner.max_iters, path))

    @staticmethod
    def _save(runner, step: int, name: str) -> Optional[str]:
        """Write the checkpoint of iteration ``step`` through the run's checkpoint
        hook (unless it just did); its path, or None without such a hook."""
        hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
        if hook is None or hook.by_epoch or not isinstance(runner.train_loop,
                                                           IterBasedTrainLoop):
            return None
        path = osp.join(hook.out_dir, hook.filename_tmpl.format(step))
        if getattr(hook, 'last_ckpt', None) != path:
            runner.logger.info(f'{name}: saving checkpoint at {step} iterations, then '
                               'stopping')
            hook._save_checkpoint(runner)
        return path

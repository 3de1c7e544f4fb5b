"""Which checkpoint ``tools/train.py --resume`` continues from.

* :func:`~mmseg_dida.utils.atomic_files.checkpoint_problem` -- why a file is not a
  complete checkpoint (missing, unreadable, truncated), or None;
* :func:`find_resume_checkpoint` -- the file ``last_checkpoint`` names when it is
  complete, else the newest complete ``iter_*.pth``/``epoch_*.pth`` of the work dir,
  with a sentence saying what was skipped and why; :func:`resume_candidates` -- the
  files it looked at (none: nothing to resume, a first start).
"""
import os
import os.path as osp
import re
from typing import List, Optional, Tuple

from ...utils.atomic_files import checkpoint_problem, remove_stale_temporaries

__all__ = ['resume_candidates', 'find_resume_checkpoint', 'choose_resume_checkpoint',
           'ResumeError']

# interval checkpoints and the time-based one (``timed_iter_<n>.pth``)
_RUNNER_CKPT_RE = re.compile(r'^(?:timed_)?(iter|epoch)_(\d+)\.pth$')


def _runner_checkpoints(work_dir: str) -> List[Tuple[int, str]]:
    found = []
    for name in os.listdir(work_dir):
        m = _RUNNER_CKPT_RE.match(name)
        if m:
            found.append((int(m.group(2)), osp.join(work_dir, name)))
    return sorted(found, reverse=True)


def resume_candidates(work_dir: str) -> List[str]:
    """The files of ``work_dir`` that ``--resume`` looks at: ``last_checkpoint`` and
    the runner's ``iter_<n>.pth`` / ``epoch_<n>.pth`` (and ``timed_iter_<n>.pth``),
    complete or not."""
    if not osp.isdir(work_dir):
        return []
    last = osp.join(work_dir, 'last_checkpoint')
    return ([last] if osp.isfile(last) else []) + [p for _, p in
                                                   _runner_checkpoints(work_dir)]


def find_resume_checkpoint(work_dir: str) -> Tuple[Optional[str], str]:
    """The checkpoint ``--resume`` continues from, and a sentence saying which.

    The file ``<work_dir>/last_checkpoint`` names, if it is complete; otherwise the
    newest complete ``iter_<n>.pth`` / ``epoch_<n>.pth`` of the work dir (the
    sentence then says which file was skipped and why). ``(None, sentence)`` when
    there is none."""
    if not osp.isdir(work_dir):
        return None, f'no checkpoint to resume from: {work_dir} does not exist'
    named = None
    last_file = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last_file):
        with open(last_file) as f:
            named = f.read().strip()
        if named and not osp.isabs(named):
            named = osp.join(work_dir, named)
        if named:
            problem = checkpoint_problem(named)
            if problem is None:
                return named, f'resuming from {named}'
            skipped = f'last_checkpoint names {named}, but {problem}'
        else:
            skipped = 'last_checkpoint is empty'
    else:
        skipped = 'there is no last_checkpoint file'
    for _, path in _runner_checkpoints(work_dir):
        if path == named:
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            return path, (f'{skipped}; resuming from the newest complete checkpoint '
                          f'{path}')
        skipped += f'; {osp.basename(path)} skipped ({problem})'
    return None, f'{skipped}; no complete checkpoint in {work_dir}'


class ResumeError(ValueError):
    """``--resume`` cannot continue: checkpoint files exist but none is complete, or
    the one given is not; the message is one line."""


def choose_resume_checkpoint(work_dir: str, load_from: Optional[str] = None,
                             clean_temporaries: bool = True
                             ) -> Tuple[Optional[str], str]:
    """What ``--resume`` continues from, and a sentence saying so: ``load_from`` when
    given (it must be complete), else the newest complete checkpoint of ``work_dir``
    (:func:`find_resume_checkpoint`), else None for a first start (an empty work dir).
    With ``clean_temporaries`` the temporary files of a killed save are removed first
    (only one process may do that). Raises :class:`ResumeError`."""
    if load_from:
        problem = checkpoint_problem(load_from)
        if problem is not None:
            raise ResumeError(f'cannot resume from {load_from}: {problem}')
        return load_from, f'resuming from {load_from} (load_from)'
    work_dir = osp.abspath(work_dir)
    notes = []
    if clean_temporaries:
        for path in remove_stale_temporaries(work_dir):
            notes.append(f'removed {path}, a temporary file of a killed run')
    path, sentence = find_resume_checkpoint(work_dir)
    if path is None:
        if resume_candidates(work_dir):
            raise ResumeError(f'cannot resume: {sentence}; start from iteration 0 '
                              'without --resume, or resume from another checkpoint '
                              'with --cfg-options load_from=PATH')
        return None, '; '.join(notes + [f'no checkpoint in {work_dir} yet, starting '
                                        'from iteration 0'])
    return path, '; '.join(notes + [sentence])

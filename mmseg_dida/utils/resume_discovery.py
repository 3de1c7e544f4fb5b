"""Which checkpoint ``tools/train.py --resume`` continues from.

* :func:`checkpoint_problem` -- why a file is not a complete checkpoint (missing,
  unreadable, truncated), or None. torch writes zip archives whose central directory
  is the last thing written, so a truncated file never opens as a zip archive.
* :func:`find_resume_checkpoint` -- the file ``last_checkpoint`` names when it is
  complete, else the newest complete ``iter_*.pth``/``epoch_*.pth`` of the work dir,
  with a sentence saying what was skipped and why; :func:`resume_candidates` -- the
  files it looked at (none: nothing to resume, a first start).
"""
import os
import os.path as osp
import re
import zipfile
from typing import List, Optional, Tuple

__all__ = ['checkpoint_problem', 'resume_candidates', 'find_resume_checkpoint']

_RUNNER_CKPT_RE = re.compile(r'^(iter|epoch)_(\d+)\.pth$')


def checkpoint_problem(path: str) -> Optional[str]:
    """None when ``path`` is a complete torch checkpoint, else what is wrong."""
    if not osp.exists(path):
        return 'it does not exist'
    if not osp.isfile(path):
        return 'it is not a file'
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        size = osp.getsize(path)
        return f'it is truncated or not a torch checkpoint ({size} bytes, no zip end ' \
               'record)'
    except OSError as e:
        return f'it cannot be read ({e.strerror or e})'
    if not any(n.endswith('data.pkl') for n in names):
        return 'it is a zip archive without torch data (data.pkl)'
    return None


def _runner_checkpoints(work_dir: str) -> List[Tuple[int, str]]:
    found = []
    for name in os.listdir(work_dir):
        m = _RUNNER_CKPT_RE.match(name)
        if m:
            found.append((int(m.group(2)), osp.join(work_dir, name)))
    return sorted(found, reverse=True)


def resume_candidates(work_dir: str) -> List[str]:
    """The files of ``work_dir`` that ``--resume`` looks at: ``last_checkpoint`` and
    the runner's ``iter_<n>.pth`` / ``epoch_<n>.pth``, complete or not."""
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

"""Files written completely or not at all.

Every file a tool of this project writes (checkpoints, ``deploy.pth``, configs,
metrics, reports) goes through :func:`atomic_write`:

* :func:`atomic_write` -- a context manager that yields a file object for a temporary
  file in the destination folder (``.<name>.tmp-<pid>-<random>``); on success the
  data are flushed and fsync'ed, the file is renamed onto ``path`` (``os.replace``,
  atomic on POSIX) and the folder entry is fsync'ed. On an exception the temporary
  file is removed. A process killed at any moment leaves either the old file, the
  new file, or a stray temporary file that nothing ever reads (and
  :func:`remove_stale_temporaries` deletes).
* :func:`atomic_torch_save`, :func:`atomic_write_text` -- ``torch.save`` / text
  through :func:`atomic_write`.
* :func:`checkpoint_problem` -- the reading side: whether a checkpoint file is
  complete (and why not).
"""
import contextlib
import os
import os.path as osp
import re
import secrets
import zipfile
from typing import IO, Iterator, List, Optional

import torch

__all__ = ['atomic_write', 'atomic_torch_save', 'atomic_write_text',
           'remove_stale_temporaries', 'checkpoint_problem']

_TMP_MARK = '.tmp-'
_TMP_RE = re.compile(r'^\..+\.tmp-\d+-[0-9a-f]+$')


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. not permitted on this platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'wb') -> Iterator[IO]:
    """Yield a file object whose content replaces ``path`` only once it is complete
    (temporary file in the same folder, fsync, ``os.replace``, fsync of the folder)."""
    if mode not in ('w', 'wb'):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    folder = osp.dirname(osp.abspath(path))
    tmp = osp.join(folder, f'.{osp.basename(path)}{_TMP_MARK}{os.getpid()}-'
                   f'{secrets.token_hex(4)}')
    f = open(tmp, mode)
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException:
        f.close()
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def atomic_torch_save(obj, path: str) -> None:
    """``torch.save(obj, path)``, complete or absent."""
    with atomic_write(path, 'wb') as f:
        torch.save(obj, f)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path``, complete or absent."""
    with atomic_write(path, 'w') as f:
        f.write(text)


def remove_stale_temporaries(folder: str) -> List[str]:
    """Delete the temporary files :func:`atomic_write` left in ``folder`` when its
    process was killed; return their paths. Call it when no other process writes
    there (before training starts)."""
    removed = []
    if not osp.isdir(folder):
        return removed
    for name in os.listdir(folder):
        if _TMP_RE.match(name):
            path = osp.join(folder, name)
            with contextlib.suppress(OSError):
                os.remove(path)
                removed.append(path)
    return removed


def checkpoint_problem(path: str) -> Optional[str]:
    """None when ``path`` is a complete torch checkpoint, else what is wrong. torch
    writes zip archives whose central directory is the last thing written, so a
    truncated file never opens as a zip archive."""
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

"""mmseg_dida.utils.atomic_files: a file is complete or absent, even under SIGKILL."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from mmseg_dida.utils.atomic_files import (
    atomic_torch_save,
    atomic_write,
    atomic_write_text,
    remove_stale_temporaries,
)


def test_atomic_write_replaces_only_when_complete(tmp_path):
    path = tmp_path / 'f.txt'
    atomic_write_text(str(path), 'old')
    with pytest.raises(RuntimeError):
        with atomic_write(str(path), 'w') as f:
            f.write('new, half')
            raise RuntimeError('killed')
    assert path.read_text() == 'old'
    assert os.listdir(tmp_path) == ['f.txt']  # the temporary file is gone
    atomic_write_text(str(path), 'new')
    assert path.read_text() == 'new'
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with atomic_write(str(path), 'a'):
            pass


def test_sigkill_during_save_leaves_old_file_and_a_stray_temporary(tmp_path):
    path = tmp_path / 'ckpt.pth'
    atomic_torch_save({'x': torch.zeros(3)}, str(path))
    script = textwrap.dedent(f"""
        import os, signal, torch
        from mmseg_dida.utils.atomic_files import atomic_write
        with atomic_write({str(path)!r}) as f:
            f.write(b'partial data')
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        """)
    res = subprocess.run([sys.executable, '-c', script], capture_output=True)
    assert res.returncode == -signal.SIGKILL
    assert torch.equal(torch.load(path)['x'], torch.zeros(3))
    stray = [n for n in os.listdir(tmp_path) if n != 'ckpt.pth']
    assert len(stray) == 1 and '.tmp-' in stray[0]
    assert remove_stale_temporaries(str(tmp_path)) == [str(tmp_path / stray[0])]
    assert os.listdir(tmp_path) == ['ckpt.pth']
    assert remove_stale_temporaries(str(tmp_path / 'none')) == []

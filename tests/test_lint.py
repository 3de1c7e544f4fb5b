"""The repository stays clean under its one linter (ruff, configured in ruff.toml)."""
import os.path as osp
import shutil
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _ruff():
    exe = osp.join(osp.dirname(sys.executable), 'ruff')
    return exe if osp.isfile(exe) else shutil.which('ruff')


@pytest.mark.skipif(_ruff() is None, reason='ruff not installed (tools/setup_env.sh --dev)')
def test_ruff_check_is_clean():
    res = subprocess.run([_ruff(), 'check', '--no-cache', REPO], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:]

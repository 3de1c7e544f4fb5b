import os
import os.path as osp
import subprocess
import sys

import pytest

import mmseg_dida  # noqa: F401  (compat + registration, as every entry point does)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='session')
def repo_root():
    return REPO


def _run_tool(args, cwd, timeout=600, env=None):
    """Run a repository tool (tools/*.py) in a fresh interpreter; return the result."""
    full_env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    full_env.update(env or {})
    return subprocess.run([sys.executable] + list(args), cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='session')
def run_tool():
    """``run_tool(args, cwd, timeout=600, env=None)`` runs ``python *args`` fresh."""
    return _run_tool


@pytest.fixture(scope='session')
def tiny_benchmark(tmp_path_factory):
    """A tiny procedural benchmark at <tmp>/data/procedural (the configs' relative
    data root when a tool runs with cwd=<tmp>)."""
    from mmseg_dida.datasets.procedural import generate_benchmark
    cwd = tmp_path_factory.mktemp('bench')
    generate_benchmark(str(cwd / 'data' / 'procedural'), seed=0, size=(128, 64),
                       counts=dict(train=8, val=4))
    return cwd

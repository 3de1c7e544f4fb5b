import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

import mmseg_dida  # noqa: F401  (compat + registration, as every entry point does)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='session')
def repo_root():
    return REPO


# What a test's child process sees so that it runs as on a CPU-only machine even when a
# GPU is visible: gloo instead of NCCL for several processes, CPU tensors for bitwise
# comparisons, no device ordinals that a one-GPU machine lacks.
CPU_ONLY_ENV = dict(CUDA_VISIBLE_DEVICES='')


def _run_tool(args, cwd, timeout=600, env=None):
    """Run a repository tool (tools/*.py) in a fresh interpreter, on the CPU (a GPU is
    hidden from it; ``env`` may give it back); return the result."""
    full_env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1',
                    **CPU_ONLY_ENV)
    full_env.update(env or {})
    return subprocess.run([sys.executable] + list(args), cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cpu_only(monkeypatch):
    """Run the test as on a machine without CUDA, also where a GPU is visible:
    ``torch.cuda.is_available()`` is False, mmengine's device (where its runner puts
    the model, which autocast it enters) is the CPU, and the processes the test starts
    see no GPU."""
    import mmengine.device.utils as mmengine_device
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(mmengine_device, 'DEVICE', 'cpu')
    for key, value in CPU_ONLY_ENV.items():
        monkeypatch.setenv(key, value)


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

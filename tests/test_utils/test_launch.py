"""The distributed backend follows what the process sees: NCCL (mmengine's own set-up)
where CUDA is available, gloo set up by us where it is not; and the tests' own runs,
which need CPU semantics (gloo processes, bitwise comparisons), hide a visible GPU so
that they take the gloo path on a GPU machine too."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mmseg_dida.apis import launch
from tests.helpers.reliability import tool_env

HERE = osp.dirname(osp.abspath(__file__))


def _cfg():
    return Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl')),
                       model_wrapper_cfg=dict(type='UDADistributedWrapper')))


def test_visible_cuda_leaves_nccl_to_mmengine(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    started = []
    monkeypatch.setattr(launch, 'init_cpu_distributed', started.append)
    cfg = _cfg()
    launch.setup_launcher(cfg, 'pytorch')
    assert cfg.launcher == 'pytorch' and not started
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    assert 'device_ids' not in cfg.model_wrapper_cfg


def test_without_cuda_the_launcher_sets_up_gloo(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    started = []
    monkeypatch.setattr(launch, 'init_cpu_distributed', started.append)
    cfg = _cfg()
    launch.setup_launcher(cfg, 'pytorch')
    assert started == ['pytorch']
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.device_ids is None


def test_single_process_needs_no_backend(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(launch, 'init_cpu_distributed', lambda _: 1 / 0)
    cfg = _cfg()
    launch.setup_launcher(cfg, 'none')
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'  # untouched, never used


def test_cpu_only_fixture_pins_this_process_to_the_cpu(cpu_only):
    from mmengine.device import get_device, is_cuda_available
    from mmengine.optim import AmpOptimWrapper
    assert not torch.cuda.is_available() and not is_cuda_available()
    assert get_device() == 'cpu'  # where mmengine's runner puts the model
    assert os.environ['CUDA_VISIBLE_DEVICES'] == ''
    weight = torch.zeros(1, requires_grad=True)
    with pytest.raises(AssertionError, match='only available'):  # fp16 AMP needs CUDA
        AmpOptimWrapper(optimizer=torch.optim.SGD([weight], lr=0.1))


def test_the_tests_child_processes_see_no_gpu(repo_root, run_tool):
    """What the tools the tests start (tool_env, run_tool) see; on a GPU machine this
    is the difference between gloo and NCCL."""
    code = ('import torch, mmengine.device as d; '
            'print(torch.cuda.is_available(), d.get_device())')
    res = subprocess.run([sys.executable, '-c', code], env=tool_env(),
                         capture_output=True, text=True, timeout=300, cwd=repo_root)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ['False', 'cpu']
    res = run_tool(['-c', code], cwd=repo_root)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ['False', 'cpu']


_EXIT_SCRIPT = '''
import atexit, sys
from mmseg_dida.apis.launch import exit_process
atexit.register(lambda: open(sys.argv[1], 'w').write('handlers ran'))
class Teardown:
    def __del__(self):  # runs at interpreter teardown only
        sys.stderr.write('teardown ran')
keep = Teardown()
sys.stdout.write('unflushed output')  # no newline: still in the buffer
exit_process(7)
'''


def _run_exit_script(tmp_path, world_size):
    env = dict(os.environ, WORLD_SIZE=world_size,
               PYTHONPATH=osp.dirname(osp.dirname(HERE)))
    marker = tmp_path / f'atexit_{world_size}.txt'
    res = subprocess.run([sys.executable, '-c', _EXIT_SCRIPT, str(marker)], env=env,
                         capture_output=True, text=True, timeout=120)
    return res, marker


def test_exit_process_skips_the_teardown_of_one_of_several_processes(tmp_path):
    res, marker = _run_exit_script(tmp_path, '2')
    assert res.returncode == 7
    assert res.stdout == 'unflushed output'  # flushed before leaving
    assert marker.read_text() == 'handlers ran'  # exit handlers (log files) ran
    assert 'teardown ran' not in res.stderr  # no interpreter teardown


def test_exit_process_of_a_single_process_is_a_normal_exit(tmp_path):
    res, marker = _run_exit_script(tmp_path, '1')
    assert res.returncode == 7
    assert res.stdout == 'unflushed output'
    assert marker.read_text() == 'handlers ran'
    assert 'teardown ran' in res.stderr

"""tools/dist_train.sh with 2 processes trains on a CPU-only machine (gloo); a visible
GPU is hidden from the run, so the gloo path is checked everywhere."""
import glob
import os
import os.path as osp
import socket
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs/benchmark/source_only_mit_tiny_procedural.py')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_dist_train_two_cpu_processes(tiny_benchmark):
    work = tiny_benchmark / 'dist_work'
    opts = ['model.data_preprocessor.size=(64,128)', 'train_cfg.max_iters=2',
            'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
            'default_hooks.logger.interval=1']
    opts += [f'{dl}.{k}' for dl in ('train_dataloader', 'val_dataloader',
                                    'val_cfg.extra.source.dataloader')
             for k in ('num_workers=0', 'persistent_workers=False')]
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()),
               OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    res = subprocess.run(
        ['bash', osp.join(REPO, 'tools/dist_train.sh'), CONFIG, '2', '--work-dir',
         str(work), '--cfg-options'] + opts,
        cwd=tiny_benchmark, env=env, capture_output=True, text=True, timeout=600)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert 'cpu, 2 processes' in res.stdout  # the header on the console
    # the environment dump goes to the run's log file
    env_dump = ''.join(open(p).read() for p in glob.glob(str(work / '*' / '*.log')))
    assert 'Distributed training: True' in env_dump
    assert 'GPU number: 2' in env_dump  # mmengine's name for the world size
    assert osp.isfile(work / 'iter_2.pth')
    assert 'source/mIoU' in log  # both val datasets evaluated across ranks

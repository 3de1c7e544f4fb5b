"""A stop signal ends training after the current iteration with a checkpoint of it.

End to end: SIGTERM at a random iteration between checkpoint intervals (DAFormer on
the tiny procedural benchmark, 4 iterations, checkpoint interval 4): the run exits
with status 75, the checkpoint of the stop iteration exists and is bit for bit the
one the uninterrupted run writes at that iteration, and the run resumed from it ends
bit for bit where the uninterrupted run ends. One process (a second SIGTERM aimed at
the save), and 2 gloo processes with the signal sent to rank 1 only (rank 0 must stop
after the same iteration). The uninterrupted run is the resume tests'
(``tests.helpers.reliability.uninterrupted_run``).

In process: the handler records the first signal only, a forked worker survives a
scheduler's signals (SIGINT, SIGUSR1 once; SIGTERM unless its parent sends it), and
tools/dist_launch.py passes the signals on to the ranks.
"""
import os
import os.path as osp
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from mmseg_dida.engine.resume import STOP_EXIT_STATUS, GracefulStopHook
from mmseg_dida.utils.atomic_files import checkpoint_problem
from tests.helpers.reliability import (
    CONFIGS,
    FAST,
    REF_ITERS,
    REPO,
    checkpoint_diff,
    free_port,
    run_train,
    schedule,
    tool_env,
    train_command,
    uninterrupted_run,
)
from tests.helpers.tools import load_tool

dist_launch = load_tool('tools/dist_launch.py')
ITERS = REF_ITERS
ARGS = ['--cfg-options'] + FAST + schedule(ITERS, ckpt_interval=ITERS, val_interval=2)
STOPPED = re.compile(r'stopped by SIGTERM after iteration (\d+) of \d+: checkpoint (\S+) '
                     r'written, continue with --resume \(exit status 75\)')


def _rank_pid(launcher: int, rank: int, timeout: float = 60) -> int:
    """The pid of a rank started by tools/dist_launch.py (process id ``launcher``)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for pid in dist_launch.children(launcher):
            try:
                env = open(f'/proc/{pid}/environ', 'rb').read().split(b'\0')
            except OSError:
                continue
            if f'RANK={rank}'.encode() in env:
                return pid
        time.sleep(0.05)
    raise AssertionError(f'no rank {rank} under process {launcher}')


def _signal_inside_save(work, pid, done: threading.Event, hit: list):
    """Send SIGTERM to ``pid`` as soon as a temporary checkpoint file appears."""
    while not done.is_set():
        if any('.tmp-' in n for n in os.listdir(work)):
            os.kill(pid, signal.SIGTERM)
            hit.append(any('.tmp-' in n for n in os.listdir(work)))
            return
        time.sleep(0.0005)


def _stopped_run(work, cwd, world: int, after: int):
    """Train, send SIGTERM once iteration ``after`` is logged (to the process, or to
    rank 1 of 2); return (exit status, output, second signal landed inside the save)."""
    proc = subprocess.Popen(train_command(CONFIGS['daformer'], work, world, ARGS),
                            cwd=cwd, env=tool_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines, hit, done, signalled = [], [], threading.Event(), False
    for line in proc.stdout:
        lines.append(line)
        if not signalled and f'Iter(train) [{after}/{ITERS}]' in line:
            target = proc.pid if world == 1 else _rank_pid(proc.pid, 1)
            os.kill(target, signal.SIGTERM)
            signalled = True
            if world == 1:  # and once more while the checkpoint is written
                threading.Thread(target=_signal_inside_save,
                                 args=(work, target, done, hit), daemon=True).start()
    done.set()
    return proc.wait(timeout=600), ''.join(lines), bool(hit and hit[0])


@pytest.mark.parametrize('world', [1, 2], ids=['1proc', '2proc'])
def test_sigterm_between_checkpoints_stops_and_resumes_exactly(world, tiny_benchmark):
    ref = uninterrupted_run('daformer', world, tiny_benchmark)
    after = random.Random(world).choice([1, 2])
    work = tiny_benchmark / f'stopped_{world}'
    rc, out, in_save = _stopped_run(work, tiny_benchmark, world, after)
    assert rc == STOP_EXIT_STATUS, out[-4000:]
    found = STOPPED.findall(out)
    assert len(found) == 1, out[-4000:]  # one line, from rank 0
    k, path = int(found[0][0]), found[0][1]
    assert after <= k < ITERS and path == str(work / f'iter_{k}.pth'), found
    assert checkpoint_problem(path) is None
    assert sorted(n for n in os.listdir(work) if n.endswith('.pth')) == [f'iter_{k}.pth']
    assert open(work / 'last_checkpoint').read().strip() == path
    stop_diff = checkpoint_diff(ref / f'iter_{k}.pth', path)
    log = run_train(CONFIGS['daformer'], work, tiny_benchmark, ['--resume'] + ARGS,
                    world=world)
    assert f'--resume: resuming from {path}' in log
    final_diff = checkpoint_diff(ref / f'iter_{ITERS}.pth', work / f'iter_{ITERS}.pth')
    print(f'{world} process(es): SIGTERM after iteration {after} was logged'
          f"{' (rank 1 only)' if world == 2 else ''}, stopped after {k}"
          f"{', a second SIGTERM inside the save' if in_save else ''}; stop checkpoint "
          f'vs uninterrupted iter_{k}: {stop_diff}; resumed vs uninterrupted '
          f'iter_{ITERS}: {final_diff}')
    assert all(v == 0 for v in stop_diff.values()), stop_diff
    assert all(v == 0 for v in final_diff.values()), final_diff


# ------------------------------------------------------------------ in process
def test_handler_records_the_first_signal_and_restores_the_previous_handlers():
    before = signal.getsignal(signal.SIGUSR1)
    hook = GracefulStopHook(signals=['SIGUSR2', 'SIGUSR1'])
    try:
        assert hook.received is None
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert hook.received == signal.SIGUSR2
    finally:
        hook.restore_signals()
    assert signal.getsignal(signal.SIGUSR1) == before


@pytest.mark.parametrize('signals', [['SIGTERN'], ['SIGKILL'], 'SIGTERM', []])
def test_bad_signal_names_are_one_line(signals):
    with pytest.raises(ValueError, match='^GracefulStopHook: signals') as err:
        GracefulStopHook(signals=signals)
    assert '\n' not in str(err.value)


def test_a_forked_worker_survives_the_first_signal_of_each_kind():
    hook = GracefulStopHook(signals=['SIGUSR1'])
    try:
        pid = os.fork()
        if pid == 0:  # the worker: the first SIGUSR1 is ignored, the second ends it
            try:
                os.kill(os.getpid(), signal.SIGUSR1)
                time.sleep(0.05)
                os.kill(os.getpid(), signal.SIGUSR1)
                time.sleep(5)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
    finally:
        hook.restore_signals()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGUSR1
    assert hook.received is None  # the worker's signals are its own


def test_a_forked_worker_ends_on_sigterm_from_its_parent_only():
    hook = GracefulStopHook(signals=['SIGTERM'])
    try:
        pid = os.fork()
        if pid == 0:  # the worker (torch sets its own SIGTERM handler in workers)
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                time.sleep(30)
            finally:
                os._exit(3)
        time.sleep(0.2)
        subprocess.run(['kill', '-TERM', str(pid)], check=True)  # a scheduler's
        time.sleep(0.3)
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # still running
        os.kill(pid, signal.SIGTERM)  # its parent's: ends it quietly
        _, status = os.waitpid(pid, 0)
    finally:
        hook.restore_signals()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@pytest.mark.parametrize('codes, expected', [
    ((75, 75), True),
    ((75, -15), True),  # torchrun ended the other rank after the first had exited
    ((75, -9), True),
    ((-15, 75), False),  # the first to end was killed: not a stop
    ((75, 1), False),
    ((1, -15), False),
])
def test_launcher_tells_a_stop_from_a_failure(codes, expected):
    from types import SimpleNamespace
    failures = {rank: SimpleNamespace(exitcode=code, timestamp=rank)
                for rank, code in enumerate(codes)}
    assert dist_launch.stopped(failures) is expected


def test_launcher_passes_signals_on_and_keeps_the_stop_status(tmp_path):
    assert dist_launch.STOP_EXIT_STATUS == STOP_EXIT_STATUS
    child = tmp_path / 'rank.py'
    child.write_text(
        'import signal, sys, time\n'
        'got = []\n'
        'signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))\n'
        'print("ready", flush=True)\n'
        'while not got:\n'
        '    time.sleep(0.01)\n'
        f'sys.exit({STOP_EXIT_STATUS})\n')
    proc = subprocess.Popen(
        [sys.executable, osp.join(REPO, 'tools/dist_launch.py'), '--nproc_per_node=2',
         '--master_addr=127.0.0.1', f'--master_port={free_port()}', str(child)],
        env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready = 0
    for line in proc.stdout:
        ready += line.strip() == 'ready'
        if ready == 2:
            os.kill(proc.pid, signal.SIGUSR1)  # torchrun alone would die of it
            break
    out = proc.stdout.read()
    assert proc.wait(timeout=120) == STOP_EXIT_STATUS, out[-3000:]
    assert 'Traceback' not in out, out[-3000:]

"""SIGKILL a training again and again -- at random moments and inside checkpoint
saves -- and ``--resume`` it each time: every resume finishes or is killed again,
no incomplete file is ever named or read, and the run finally ends bit for bit where
an uninterrupted run ends.

DAFormer on the tiny procedural benchmark, one process, a checkpoint every iteration
with ``max_keep_ckpts=1`` (the setting in which mmengine used to delete the only
checkpoint before writing the next). ``MMSEG_DIDA_KILLS`` sets the number of kills
(default 6; half of them aimed at a save: the process is killed as soon as the
temporary checkpoint file appears).
"""
import os
import os.path as osp
import random
import subprocess
import threading
import time

from mmseg_dida.utils.atomic_files import checkpoint_problem
from tests.helpers.reliability import (
    CONFIGS,
    FAST,
    checkpoint_diff,
    run_train,
    schedule,
    tool_env,
    train_command,
)

ITERS = 6
ARGS = ['--cfg-options'] + FAST + schedule(ITERS, ckpt_interval=1, keep=1,
                                           val_interval=3)


def _temporaries(work):
    return [n for n in os.listdir(work) if '.tmp-' in n] if osp.isdir(work) else []


def _check_work_dir(work, ever_saved: bool) -> bool:
    """The invariants after a kill; returns whether a checkpoint exists."""
    if not osp.isdir(work):
        return False
    ckpts = [n for n in os.listdir(work) if n.startswith('iter_') and n.endswith('.pth')]
    for name in ckpts:  # a file under a checkpoint name is always complete
        assert checkpoint_problem(osp.join(work, name)) is None, name
    last = osp.join(work, 'last_checkpoint')
    if osp.isfile(last):
        named = open(last).read().strip()
        assert checkpoint_problem(named) is None, named
    if ever_saved:  # the previous checkpoint is deleted only after the next is written
        assert ckpts, os.listdir(work)
    return bool(ckpts)


def _run_and_kill(work, cwd, mode, rng, expected_s):
    """Start a resumed training; kill it per ``mode`` (None: let it finish).
    Returns (killed, killed inside a save, output)."""
    proc = subprocess.Popen(
        train_command(CONFIGS['daformer'], work, 1, ['--resume'] + ARGS), cwd=cwd,
        env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    killed = in_save = False
    deadline = time.time() + (rng.uniform(0.0, expected_s) if mode == 'random' else 600)
    stale = set(_temporaries(work))
    while mode is not None and proc.poll() is None:
        if mode == 'save' and set(_temporaries(work)) - stale:
            proc.kill()
            killed = in_save = True
        elif mode == 'random' and time.time() >= deadline:
            proc.kill()
            killed = True
        else:
            time.sleep(0.001)
    proc.wait(timeout=600)
    reader.join(timeout=60)
    if killed and proc.returncode != -9:  # it had finished before the signal
        killed = in_save = False
    if in_save:
        in_save = bool(set(_temporaries(work)) - stale)  # a half-written file remains
    return killed, in_save, ''.join(lines), proc.returncode


def test_sigkill_loop_resumes_to_the_uninterrupted_result(tiny_benchmark):
    """Kill, resume, repeat. A resumed run may reach the last iteration before its
    kill comes (a random deadline after a short remainder): that run is checked
    against the uninterrupted one like every finished run, and the kills go on in a
    fresh work dir until all have been made."""
    kills = int(os.environ.get('MMSEG_DIDA_KILLS', 6))
    ref = tiny_benchmark / 'kill_ref'
    start = time.time()
    run_train(CONFIGS['daformer'], ref, tiny_benchmark, ARGS)
    expected_s = time.time() - start
    rng = random.Random(0)
    done = in_saves = resumes = 0
    finished = []  # work dirs whose run reached the last iteration
    work = tiny_benchmark / 'killed0'
    ever_saved = False
    for attempt in range(4 * kills + 10):
        mode = None if done >= kills else ('save' if done % 2 == 0 else 'random')
        killed, in_save, out, rc = _run_and_kill(work, tiny_benchmark, mode, rng,
                                                 expected_s)
        chosen = [ln for ln in out.splitlines() if ln.startswith('--resume: ')]
        # one choice per start; a kill may come before the header is printed
        assert len(chosen) == 1 or (killed and not chosen), out[-3000:]
        if chosen and 'resuming from' in chosen[0]:
            resumes += 1
        ever_saved = _check_work_dir(work, ever_saved) or ever_saved
        if killed:
            done += 1
            in_saves += in_save
            continue
        assert rc == 0, out[-4000:]
        finished.append(work)
        if mode is None:
            break
        work = tiny_benchmark / f'killed{len(finished)}'  # kills still to make
        ever_saved = False
    else:
        raise AssertionError(f'the run did not finish after {attempt + 1} starts')
    print(f'kills: {done} ({in_saves} inside a checkpoint save), resumed runs: '
          f'{resumes}, finished runs: {len(finished)}, all survived')
    assert done == kills and in_saves >= 1
    for work in finished:
        diff = checkpoint_diff(ref / f'iter_{ITERS}.pth', work / f'iter_{ITERS}.pth')
        print(f'{work.name}: killed-and-resumed vs uninterrupted, max abs difference:',
              diff)
        assert all(v == 0 for v in diff.values()), diff


def test_sigkill_after_a_timed_checkpoint_resumes_bitwise(tiny_benchmark, tmp_path):
    """``time_interval``: between the interval checkpoints (here none before the end)
    a checkpoint by time; a SIGKILL right after one is written loses only what came
    after it, and the resumed run ends where the uninterrupted one does."""
    timed = FAST + schedule(ITERS, ckpt_interval=1000, keep=1, val_interval=1000) + [
        'default_hooks.checkpoint.time_interval=0.0001']  # after every iteration
    ref = tmp_path / 'ref'
    run_train(CONFIGS['daformer'], ref, tiny_benchmark, ['--cfg-options'] + timed)
    work = tmp_path / 'work'
    proc = subprocess.Popen(
        train_command(CONFIGS['daformer'], work, 1, ['--cfg-options'] + timed),
        cwd=tiny_benchmark, env=tool_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    # kill once checkpoint 3 is written and its predecessor removed (the hook deletes
    # the older timed copy only after the newer one is complete)
    target, older = work / 'timed_iter_3.pth', work / 'timed_iter_2.pth'
    deadline = time.time() + 600
    while not (target.exists() and not older.exists()) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.001)
    proc.kill()
    proc.wait(timeout=60)
    assert proc.returncode == -9, 'the run ended before its timed checkpoint 3'
    timed_files = sorted(n for n in os.listdir(work) if n.startswith('timed_'))
    assert len(timed_files) == 1  # only the newest copy is kept
    named = open(work / 'last_checkpoint').read().strip()
    assert osp.basename(named) == timed_files[0]
    assert checkpoint_problem(named) is None
    assert not [n for n in os.listdir(work) if n.startswith('iter_')]
    res = subprocess.run(train_command(CONFIGS['daformer'], work, 1,
                                       ['--resume', '--cfg-options'] + timed),
                         cwd=tiny_benchmark, env=tool_env(), capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert f'resuming from {named}' in res.stdout + res.stderr
    diff = checkpoint_diff(ref / f'iter_{ITERS}.pth', work / f'iter_{ITERS}.pth')
    assert diff and all(v == 0 for v in diff.values()), diff
    assert not [n for n in os.listdir(work) if n.startswith('timed_')]  # superseded

"""A run killed after iteration k and resumed ends bit for bit where the
uninterrupted run ends: weights (student, teacher, plug-ins), normalisation buffers,
optimiser and scheduler states, and every rank's random states.

DAFormer and DAFormer + DiDA on the tiny procedural benchmark (CPU), k = 1 and 3 of
4 iterations, one process and 2 gloo processes; a validation at iteration 2 sits in
between (it must not shift the training run's random streams). The checkpoint at k
of the uninterrupted run is exactly what a run killed after k leaves, so resuming
from a copy of it is resuming a killed run (tests/test_tools/test_kill_resume.py
kills for real).
"""
import shutil

import pytest
import torch

from tests.helpers.reliability import (
    CONFIGS,
    REF_ARGS,
    REF_ITERS,
    checkpoint_diff,
    run_train,
    uninterrupted_run,
)

ITERS = REF_ITERS
KS = (1, 3)
ARGS = REF_ARGS


@pytest.fixture(scope='module', params=[('daformer', 1), ('dida', 1), ('daformer', 2),
                                        ('dida', 2)],
                ids=lambda p: f'{p[0]}-{p[1]}proc')
def reference(request, tiny_benchmark):
    method, world = request.param
    return method, world, uninterrupted_run(method, world, tiny_benchmark)


@pytest.mark.parametrize('k', KS)
def test_resumed_run_equals_uninterrupted_run(reference, k, tiny_benchmark):
    method, world, ref = reference
    work = tiny_benchmark / f'resumed_{method}_{world}_{k}'
    work.mkdir()
    shutil.copy(ref / f'iter_{k}.pth', work / f'iter_{k}.pth')
    (work / 'last_checkpoint').write_text(str(work / f'iter_{k}.pth'))
    log = run_train(CONFIGS[method], work, tiny_benchmark, ['--resume'] + ARGS,
                    world=world)
    assert f'resumed epoch: 0, iter: {k}' in log
    assert f'{k} trained batches skipped without loading them' in log
    assert 'random states of rank 0 restored' in log  # (rank 1 logs no info lines;
    # its random states are compared in the final checkpoint below)
    if method == 'dida':
        assert 'model.plugins.0.degradation' in log  # DiDA's own t/eps generator
    diff = checkpoint_diff(ref / f'iter_{ITERS}.pth', work / f'iter_{ITERS}.pth')
    print(f'{method} {world} process(es), resumed at k={k}: max abs difference',
          diff)
    expected_groups = {'student params', 'student buffers', 'teacher', 'local_iter',
                       'optimizer', 'param_schedulers', 'resume_state'}
    if method == 'dida':
        expected_groups.add('plugins')
    assert expected_groups <= set(diff)
    assert all(v == 0 for v in diff.values()), diff
    ckpt = torch.load(work / f'iter_{ITERS}.pth', weights_only=False)
    assert len(ckpt['resume_state']) == world
    if method == 'dida':  # the deployable model written after training, too
        a = torch.load(ref / 'deploy.pth')['state_dict']
        b = torch.load(work / 'deploy.pth')['state_dict']
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)

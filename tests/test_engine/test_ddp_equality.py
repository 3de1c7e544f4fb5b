"""N gloo processes with batch B each == one process with batch N*B (DACS step).

Exact configuration: no BN, no dropout, fixed ClassMix masks (a function of the labels),
no colour jitter/blur; the batch confidence q^T and the FD mask count are reduced over
processes by the model, the wrapper averages every gradient once per step.
"""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmseg.registry import MODEL_WRAPPERS

import mmseg_dida  # noqa: F401
from mmseg_dida.models.uda import UDADistributedWrapper
from tests.helpers.uda import STEPS, WORLD, ddp_worker, exact_dacs, make_batch, run_steps


@pytest.mark.skipif(not dist.is_available(), reason='torch.distributed unavailable')
def test_two_gloo_processes_equal_one_process_with_double_batch(tmp_path):
    single = exact_dacs()
    logs = run_steps(single, [make_batch(n=4, seed=s) for s in range(STEPS)])
    mp.spawn(ddp_worker, args=(WORLD, str(tmp_path / 'init'), str(tmp_path)),
             nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pth') for r in range(WORLD)]
    # Identical on all ranks, bit for bit (same reduced gradients, same EMA).
    for key in ('student', 'teacher'):
        for a, b in zip(ranks[0][key], ranks[1][key]):
            assert torch.equal(a, b)
    # Equal to the single process up to float summation order.
    moved = 0.0
    for p, q, p0 in zip(single.student.parameters(), ranks[0]['student'],
                        exact_dacs().student.parameters()):
        assert torch.allclose(p.detach(), q, atol=1e-5, rtol=1e-5)
        moved = max(moved, (p.detach() - p0.detach()).abs().max().item())
    assert moved > 1e-4  # the steps really changed the weights
    for p, q in zip(single.teacher.parameters(), ranks[0]['teacher']):
        assert torch.allclose(p.detach(), q, atol=1e-5, rtol=1e-5)
    # Logged losses: the mean of the per-rank values is the single-process value.
    for step in range(STEPS):
        for key in ('src.decode.loss_ce', 'mix.decode.loss_ce',
                    'src.loss_imnet_feat_dist', 'loss_featnorm'):
            mean = sum(r['logs'][step][key] for r in ranks) / WORLD
            assert mean == pytest.approx(logs[step][key], rel=1e-5, abs=1e-7)
        q = logs[step]['pseudo_weight']
        assert ranks[0]['logs'][step]['pseudo_weight'] == pytest.approx(q, abs=1e-7)
    # The batch confidence weight is not trivial at the first step (0.52 here).
    assert 0.2 < logs[0]['pseudo_weight'] < 0.8


def test_wrapper_builds_from_config_and_delegates():
    model = exact_dacs()
    wrapped = MODEL_WRAPPERS.build(dict(type='UDADistributedWrapper', module=model,
                                        find_unused_parameters=True))
    assert wrapped.module is model
    from mmengine.model import is_model_wrapper
    assert is_model_wrapper(wrapped)
    with pytest.raises(TypeError, match='forward_backward'):
        UDADistributedWrapper(torch.nn.Linear(2, 2))

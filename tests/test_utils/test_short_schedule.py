"""``tools/train.py --short N``: the schedule compressed to N iterations still warms up
to the base learning rate and decays to the end (a one-step warm-up would leave
mmengine's start factor applied for the whole run)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import PARAM_SCHEDULERS

import mmseg_dida  # noqa: F401
from mmseg_dida.apis.launch import UserError, shorten_schedule

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = ['configs/dida/daformer_mit_tiny_procedural_dida.py',
           'configs/benchmark/daformer_mit_tiny_formula_procedural.py',
           'configs/dida/daformer_mitb5_gta2cs_dida.py']


def lr_curve(cfg, iters):
    """The learning rate at every iteration, as the runner's schedulers step it."""
    param = torch.nn.Parameter(torch.zeros(1))
    base = cfg.optim_wrapper.optimizer.lr
    opt = torch.optim.SGD([param], lr=base)
    scheds = [PARAM_SCHEDULERS.build(dict(s, optimizer=opt))
              for s in cfg.param_scheduler]
    lrs = []
    for _ in range(iters):
        lrs.append(opt.param_groups[0]['lr'])
        for s in scheds:
            s.step()
    return base, lrs


@pytest.mark.parametrize('config', CONFIGS)
@pytest.mark.parametrize('iters', [3, 5, 20, 30])
def test_a_short_run_warms_up_and_decays(config, iters):
    cfg = Config.fromfile(osp.join(REPO, config))
    full_warmup = cfg.param_scheduler[0]['end']
    shorten_schedule(cfg, iters)
    assert cfg.train_cfg.max_iters == iters and cfg.train_cfg.val_interval == iters
    base, lrs = lr_curve(cfg, iters)
    assert lrs[0] < 0.01 * base  # the warm-up's start, as in the full schedule
    # it reaches the base rate (less what the decay took meanwhile)
    assert max(lrs) >= base * (1 - cfg.param_scheduler[0]['end'] / iters) * 0.99
    assert max(lrs) > 0.4 * base, (lrs, full_warmup)
    assert lrs[-1] < lrs[lrs.index(max(lrs))]  # and decays


def test_the_full_schedule_is_left_as_it_is():
    cfg = Config.fromfile(osp.join(REPO, CONFIGS[0]))
    before = [dict(s) for s in cfg.param_scheduler]
    shorten_schedule(cfg, cfg.train_cfg.max_iters)
    assert [dict(s) for s in cfg.param_scheduler] == before
    with pytest.raises(UserError, match='--short must be >= 1'):
        shorten_schedule(cfg, 0)

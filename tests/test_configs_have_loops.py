"""Every config a user trains (everything outside configs/_base_) gives mmengine's runner
what it needs to start: a validation / test loop wherever a validation / test loader
and evaluator are set (mmengine refuses to build a runner otherwise; the paper's
GTA/SYNTHIA/Cityscapes configs lacked them)."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                                      recursive=True)
                 if '_base_' not in p.split(osp.sep))


def test_there_are_configs():
    assert len(CONFIGS) > 50


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, REPO))
def test_loops_beside_loaders_and_evaluators(path):
    cfg = Config.fromfile(path)
    assert cfg.get('train_cfg') is not None
    for stage in ('val', 'test'):
        parts = [cfg.get(f'{stage}_dataloader'), cfg.get(f'{stage}_cfg'),
                 cfg.get(f'{stage}_evaluator')]
        assert all(p is None for p in parts) or all(p is not None for p in parts), (
            f'{stage}: dataloader, cfg, evaluator = {[p is not None for p in parts]}')

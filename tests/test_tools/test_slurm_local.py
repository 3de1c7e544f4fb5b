"""The real one-node Slurm test (tests/test_tools/slurm_local.sh), opt-in: it installs
packages and starts daemons, so it runs only with MMSEG_DIDA_SLURM_TEST=1 (as root)."""
import os
import os.path as osp
import subprocess

import pytest

HERE = osp.dirname(osp.abspath(__file__))


@pytest.mark.skipif(os.environ.get('MMSEG_DIDA_SLURM_TEST') != '1',
                    reason='opt-in: MMSEG_DIDA_SLURM_TEST=1 (root, installs slurm-wlm)')
def test_slurm_train_equals_dist_train():
    res = subprocess.run(['bash', osp.join(HERE, 'slurm_local.sh')], capture_output=True,
                         text=True, timeout=1800)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert 'slurm run == dist_train run' in out

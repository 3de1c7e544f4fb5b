"""Starting a DAFormer + DiDA run from a DAFormer run: ``--resume`` of the other
model's checkpoint is one line that says how, and ``load_from`` loads its student
(encoder included) with DiDA's g' copied from the loaded g."""
import os
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from mmseg_dida.engine.runner import load_initial_weights

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DAFORMER = osp.join(REPO, 'configs/benchmark/daformer_mit_tiny_procedural.py')
DIDA = osp.join(REPO, 'configs/dida/daformer_mit_tiny_procedural_dida.py')


def _model(config, seed):
    init_default_scope('mmseg')
    torch.manual_seed(seed)
    model = MODELS.build(Config.fromfile(config).model)
    model.init_weights()
    return model


def _daformer_run(work_dir):
    """A DAFormer run's checkpoint (as the runner saves it) in ``work_dir``."""
    model = _model(DAFORMER, 1)
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, 'iter_1.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(iter=1)), path)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(path)
    return model, path


def test_resume_with_another_models_checkpoint_is_one_line(tiny_benchmark, tmp_path,
                                                          run_tool):
    work = tmp_path / 'run'
    _daformer_run(str(work))
    before = sorted(os.listdir(work))
    res = run_tool([osp.join(REPO, 'tools/train.py'), DIDA, '--work-dir', str(work),
                    '--resume'], cwd=tiny_benchmark)
    assert res.returncode == 2, res.stderr[-2000:]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith('error:')]
    assert len(errors) == 1 and 'Traceback' not in res.stderr
    assert 'holds another model than this config' in errors[0]
    assert f'--cfg-options load_from={work}/iter_1.pth' in errors[0]
    assert sorted(os.listdir(work)) == before  # nothing written


def test_load_from_a_daformer_run_starts_dida_from_its_student(tmp_path):
    daformer, path = _daformer_run(str(tmp_path))
    dida = _model(DIDA, 2)
    report = load_initial_weights(dida, path)
    assert report.layout == 'uda->uda' and report.exact
    g = dida.student.backbone.backbone.state_dict()
    for key, value in daformer.student.backbone.state_dict().items():
        assert torch.equal(g[key], value), key
    for key, value in daformer.student.decode_head.state_dict().items():
        assert torch.equal(dida.student.decode_head.state_dict()[key], value), key
    # g' is the copy of the loaded g, not of the initial one
    gp = dida.student.backbone.g_prime.state_dict()
    for key, value in g.items():
        assert torch.equal(gp[key], value), key
    # the other run's iteration counter and teacher are not taken
    assert int(dida.local_iter) == 0
    # a checkpoint of this very model loads under its own names, g' included
    same = _model(DIDA, 3)
    torch.save(dict(state_dict=same.state_dict()), tmp_path / 'dida.pth')
    again = _model(DIDA, 4)
    assert load_initial_weights(again, str(tmp_path / 'dida.pth')).layout == 'same'
    for key, value in same.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key

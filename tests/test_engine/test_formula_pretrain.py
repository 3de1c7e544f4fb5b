"""Formula-driven pretraining: its schedule, an exact resume, determinism under a seed,
and weights that load strictly into the benchmark's model (and only there)."""
import copy
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from mmseg_dida.engine.formula_pretrain import FormulaPretrainer, PretrainSettings
from mmseg_dida.models.utils.weight_loading import PretrainedLoadError, load_pretrained_checked

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SOURCE_ONLY = osp.join(REPO, 'configs/benchmark/source_only_mit_tiny_formula_procedural.py')
TINY = dict(steps=4, batch_size=2, image_size=32, num_categories=2, warmup=1,
            heldout=4, eval_interval=2)


def test_learning_rate_warms_up_then_decays_by_a_cosine():
    s = PretrainSettings(steps=1100, warmup=100, lr=1e-3)
    assert s.lr_at(0) == pytest.approx(1e-5)
    assert s.lr_at(99) == pytest.approx(1e-3)
    assert s.lr_at(100) == pytest.approx(1e-3)
    assert s.lr_at(600) == pytest.approx(0.5e-3)
    assert s.lr_at(1100) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match='warmup'):
        PretrainSettings(steps=10, warmup=10).check()


def _trainer(work_dir, **kw):
    torch.set_num_threads(1)
    return FormulaPretrainer(PretrainSettings(**{**TINY, **kw}), str(work_dir),
                             ckpt_interval=2, echo=lambda s: None)


def _state(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_resumed_run_ends_with_the_uninterrupted_weights(tmp_path):
    straight = _trainer(tmp_path / 'a')
    straight.run()
    assert straight.step == 4 and [h['step'] for h in straight.history] == [2, 4]
    # the same seed gives the same weights; a stop after step 2 and a resume too
    first = _trainer(tmp_path / 'b', steps=4)
    for _ in range(2):
        first.train_step()
    first.history.append(dict(straight.history[0]))
    first.save()
    resumed = _trainer(tmp_path / 'b')
    assert resumed.resume() and resumed.step == 2
    resumed.run()
    for key, value in _state(straight).items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed.history == straight.history
    # another seed gives other weights
    other = _trainer(tmp_path / 'c', seed=1)
    other.run()
    assert not torch.equal(other.model.backbone.layers[0][0].projection.weight,
                           straight.model.backbone.layers[0][0].projection.weight)


def test_resume_with_other_settings_is_refused(tmp_path):
    t = _trainer(tmp_path)
    t.run()
    with pytest.raises(ValueError, match=r"other settings .*'lr': \(0.001, 0.002\)"):
        _trainer(tmp_path, lr=2e-3).resume()


def _benchmark_backbone(checkpoint):
    init_default_scope('mmseg')
    cfg = copy.deepcopy(Config.fromfile(SOURCE_ONLY).model.backbone)
    cfg.init_cfg.checkpoint = checkpoint
    backbone = MODELS.build(cfg)
    backbone.init_weights()
    return backbone


def test_exported_encoder_loads_strictly_into_the_benchmark_model(tmp_path):
    t = _trainer(tmp_path)
    t.run()
    info = t.export_backbone(str(tmp_path / 'w.pth'), command='python x')
    assert info['bytes'] == osp.getsize(tmp_path / 'w.pth') and len(info['sha256']) == 64
    assert info['heldout']['step'] == 4 and 0 <= info['heldout']['acc'] <= 1
    backbone = _benchmark_backbone(str(tmp_path / 'w.pth'))
    for key, value in t.model.backbone.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], value), key
    # an encoder of another shape is one error, never a partial load
    small = copy.deepcopy(backbone)
    del small.layers[3]
    torch.save(dict(state_dict=small.state_dict()), tmp_path / 'partial.pth')
    with pytest.raises(PretrainedLoadError, match='loaded only'):
        load_pretrained_checked(copy.deepcopy(backbone), str(tmp_path / 'partial.pth'))


def test_tool_prints_eta_and_digest_and_refuses_to_overwrite_a_run(tmp_path):
    args = [sys.executable, osp.join(REPO, 'tools/pretrain_formula.py'),
            '--work-dir', str(tmp_path / 'run'), '--out', str(tmp_path / 'w.pth'),
            '--status-every', '0'] + [f"--{k.replace('_', '-')}={v}"
                                      for k, v in TINY.items()]
    env = dict(__import__('os').environ, OMP_NUM_THREADS='1')
    res = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'ETA' in res.stdout and 'held-out acc' in res.stdout
    digest = __import__('hashlib').sha256((tmp_path / 'w.pth').read_bytes()).hexdigest()
    assert f'sha256 {digest}' in res.stdout
    assert '[pretrain] rebuild: python tools/pretrain_formula.py' in res.stdout
    again = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env,
                           timeout=300)
    assert again.returncode == 2
    errors = [ln for ln in again.stderr.splitlines() if ln.startswith('error:')]
    assert len(errors) == 1 and 'continue it with --resume' in errors[0]
    assert 'Traceback' not in again.stderr

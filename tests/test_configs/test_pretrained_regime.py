"""The benchmark's pretrained regime: every config of it is its scratch twin plus the
formula-pretrained encoder (loaded strictly from the shipped file), the feature
distance against that frozen start on DAFormer's thing classes, and DAFormer's
learning rates; and the feature distance is logged and moves on a thing-class batch."""
import copy
import hashlib
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.apis.benchmark import REGIMES, methods_of
from mmseg_dida.models.utils.weight_loading import read_state_dict
from tests.helpers.configs import flat
from tests.helpers.uda import make_batch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
WEIGHTS = osp.join(REPO, 'pretrained', 'mit_tiny_formula.pth')
PAIRS = [(m, methods_of('scratch')[m], methods_of('pretrained')[m])
         for m in methods_of('scratch')]


@pytest.mark.parametrize('method,scratch,pretrained', PAIRS, ids=[p[0] for p in PAIRS])
def test_a_pretrained_config_is_its_scratch_twin_plus_the_regime(method, scratch,
                                                                  pretrained):
    assert set(REGIMES) == {'scratch', 'pretrained'}
    a, b = Config.fromfile(scratch), Config.fromfile(pretrained)
    fa, fb = flat(a.to_dict()), flat(b.to_dict())
    changed = {k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k)}
    uda = 'segmentor' in a.model
    bb = 'model.segmentor.backbone.' if uda else 'model.backbone.'
    expected = {bb + 'init_cfg.type', bb + 'init_cfg.checkpoint',
                'optim_wrapper.optimizer.lr',
                'optim_wrapper.paramwise_cfg.custom_keys.head.lr_mult',
                # the regime base's own variables
                'formula_init.type', 'formula_init.checkpoint',
                'imnet_feature_dist_lambda', 'finetune_optim_wrapper.optimizer.lr',
                'finetune_optim_wrapper.paramwise_cfg.custom_keys.head.lr_mult'}
    if uda:
        expected.add('model.imnet_feature_dist_lambda')
    assert changed == expected
    assert osp.normpath(fb[bb + 'init_cfg.checkpoint']) == WEIGHTS
    assert (fb['optim_wrapper.optimizer.lr'],
            fb['optim_wrapper.paramwise_cfg.custom_keys.head.lr_mult']) == (6e-5, 10.0)
    if uda:
        assert b.model.imnet_feature_dist_lambda == 0.005
        assert b.model.imnet_feature_dist_classes == [6, 7, 11, 12, 13, 14, 15, 16, 17,
                                                     18]


def test_shipped_weights_match_their_documented_digest():
    text = open(osp.join(REPO, 'pretrained', 'README.md')).read()
    digest = hashlib.sha256(open(WEIGHTS, 'rb').read()).hexdigest()
    assert f'SHA-256 `{digest}`' in text
    assert f'{osp.getsize(WEIGHTS):,} bytes' in text


def _daformer(size=(64, 128)):
    init_default_scope('mmseg')
    cfg = Config.fromfile(methods_of('pretrained')['DAFormer'])
    cfg.model.segmentor.data_preprocessor.size = size
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, model.train()


def _batch(label_value, seed=0):
    batch = make_batch(n=2, size=(64, 128), num_classes=19, seed=seed)
    for s in batch['source']['data_samples']:
        lbl = s.gt_sem_seg.data
        lbl[:] = 0  # road
        lbl[:, :, 32:96] = label_value  # whole 32x32 blocks: the FD grid
    return batch


def test_feature_distance_is_logged_and_moves_on_thing_classes():
    cfg, model = _daformer()
    shipped = read_state_dict(WEIGHTS)
    for key, value in shipped.items():
        assert torch.equal(model.student.backbone.state_dict()[key], value), key
        assert torch.equal(model.imnet_model.backbone.state_dict()[key], value), key
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    lr = {id(p): g['lr'] for g in optim.optimizer.param_groups for p in g['params']}
    assert lr[id(next(model.student.decode_head.parameters()))] == pytest.approx(6e-4)
    assert lr[id(next(model.student.backbone.parameters()))] == pytest.approx(6e-5)
    car = 13
    assert car in cfg.model.imnet_feature_dist_classes
    # the student (drop path in training mode, then moved by the steps) is pulled to
    # the frozen start on the car pixels
    for seed in (0, 1, 2):
        log = model.train_step(_batch(car, seed=seed), optim)
        assert float(log['src.loss_imnet_feat_dist']) > 1e-4
    # a batch without a thing class has nothing to keep near the reference
    stuff = model.train_step(_batch(2, seed=3), optim)  # building
    assert float(stuff['src.loss_imnet_feat_dist']) == 0.0
    # the reference never moves
    for key, value in shipped.items():
        assert torch.equal(model.imnet_model.backbone.state_dict()[key], value), key


def test_missing_weights_name_the_rebuild_command(tmp_path):
    init_default_scope('mmseg')
    cfg = copy.deepcopy(Config.fromfile(methods_of('pretrained')['source-only']))
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'absent.pth')
    model = MODELS.build(cfg.model)
    with pytest.raises(Exception, match=re.escape('absent.pth')) as err:
        model.init_weights()
    assert 'python tools/pretrain_formula.py' in str(err.value)

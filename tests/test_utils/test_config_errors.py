"""Config mistakes become one line naming the key and what it expects."""
import os.path as osp

import pytest
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.apis.config_errors import (
    ConfigError,
    check_config,
    check_overrides,
    explain_build_error,
)
from mmseg_dida.apis.launch import UserError, load_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DIDA_CFG = osp.join(REPO, 'configs/dida/daformer_mit_tiny_procedural_dida.py')


@pytest.fixture(scope='module')
def cfg():
    return Config.fromfile(DIDA_CFG)


def test_shipped_config_passes(cfg):
    check_config(cfg)


@pytest.mark.parametrize('override, expected', [
    (dict(default_hooks=dict(logger=dict(interval='abc'))),
     "default_hooks.logger.interval: LoggerHook expects an int (default 10), got 'abc'"),
    (dict(train_cfg=dict(max_iters='abc')),
     "train_cfg.max_iters: IterBasedTrainLoop expects an int, got 'abc' (str)"),
    (dict(custom_hooks=[dict(type='DiDAHok')]),
     "custom_hooks[0].type: unknown hook type 'DiDAHok' (did you mean 'DiDAHook'"),
    (dict(train_dataloader=dict(dataset=dict(source=dict(pipeline=[
        dict(type='LoadImageFromFile', to_float=True)])))),
     "train_dataloader.dataset.source.pipeline[0].to_float: LoadImageFromFile has no "
     "argument 'to_float' (did you mean 'to_float32'?)"),
])
def test_runner_built_parts_are_checked_statically(cfg, override, expected):
    bad = Config(cfg.to_dict())
    bad.merge_from_dict(override)
    with pytest.raises(ConfigError) as err:
        check_config(bad)
    assert expected in str(err.value) and '\n' not in str(err.value)


@pytest.mark.parametrize('key, value, expected', [
    ('lambda_r', 'abc', "model.plugins[0].lambda_r: DiDA expects a float (default 5.0),"
                        " got 'abc' (str)"),
    ('lambda_rr', 1.0, "model.plugins[0].lambda_rr: DiDA has no argument 'lambda_rr' "
                       "(did you mean 'lambda_r'"),
    ('mode', 'xyz', 'model.plugins[0]: DiDA: mode must be one of'),
])
def test_model_build_errors_name_the_key(cfg, key, value, expected):
    bad = Config(cfg.to_dict())
    bad.model.plugins[0][key] = value
    init_default_scope('mmseg')
    with pytest.raises(Exception) as err:
        MODELS.build(ConfigDict(bad.model))
    line = explain_build_error(bad, err.value)
    assert line.startswith(expected), line
    assert '\n' not in line


def test_error_outside_a_build_is_not_explained(cfg):
    try:
        raise TypeError('a bug')
    except TypeError as e:
        assert explain_build_error(cfg, e) is None


def test_unused_top_level_override_is_refused(cfg):
    before = {'target_root': cfg.target_root}
    bad = Config(cfg.to_dict())
    bad.merge_from_dict({'target_root': '/data/other'})
    with pytest.raises(ConfigError) as err:
        check_overrides(bad, before, {'target_root': '/data/other'})
    msg = str(err.value)
    assert msg.startswith('--cfg-options target_root=/data/other changes nothing')
    assert 'train_dataloader.dataset.target.data_root=/data/other' in msg
    assert 'val_dataloader.dataset.data_root=/data/other' in msg
    # overriding the datasets too is fine
    bad.merge_from_dict({'train_dataloader.dataset.target.data_root': '/data/other'})
    check_overrides(bad, before, {'target_root': '/data/other'})
    with pytest.raises(UserError, match='target_root=/x changes nothing'):
        load_config(DIDA_CFG, {'target_root': '/x'})


def _node(cfg, path):
    """The config node at a dotted path with list indices (``model.plugins.0``)."""
    for key in path.split('.'):
        cfg = cfg[int(key)] if key.isdigit() else cfg[key]
    return cfg


@pytest.mark.parametrize('path, value, registry, node, expected', [
    # segmentor (nested in the UDA model)
    ('model.segmentor.decode_head.type', 'DAFormerHed', 'MODELS', 'model',
     "model.segmentor.decode_head.type: unknown model type 'DAFormerHed' (did you mean "
     "'DAFormerHead'"),
    ('model.segmentor.backbone.foo', 1, 'MODELS', 'model',
     "model.segmentor.backbone.foo: MixVisionTransformer has no argument 'foo'"),
    # plug-ins (the case: it named model.segmentor.train_cfg)
    ('model.plugins.0.type', 'DIDA', 'MODELS', 'model',
     "model.plugins[0].type: unknown model type 'DIDA' (did you mean 'DiDA'?)"),
    # hooks (built by the runner)
    ('default_hooks.graceful_stop',
     dict(type='GracefulStopHook', signals=['SIGTERN']), 'HOOKS',
     'default_hooks.graceful_stop',
     "default_hooks.graceful_stop: GracefulStopHook: signals are names of catchable "
     "signals"),
    # datasets: source and target have the same type, the target is at fault
    ('train_dataloader.dataset.target.img_suffix', 5, 'DATASETS',
     'train_dataloader.dataset',
     "train_dataloader.dataset.target.img_suffix: CityscapesDataset expects a string"),
])
def test_build_errors_name_the_key_at_each_nesting(cfg, path, value, registry, node,
                                                   expected, tiny_benchmark, monkeypatch):
    from mmseg import registry as registries
    monkeypatch.chdir(tiny_benchmark)  # the datasets' relative data roots
    bad = Config(cfg.to_dict())
    parent, _, key = path.rpartition('.')
    _node(bad, parent)[int(key) if key.isdigit() else key] = value
    init_default_scope('mmseg')
    with pytest.raises(Exception) as err:
        getattr(registries, registry).build(ConfigDict(_node(bad, node)))
    line = explain_build_error(bad, err.value, root='model' if node == 'model' else None)
    assert line.startswith(expected), line
    assert '\n' not in line

"""mmseg_dida.deploy: the plain segmentor and config of a training run, from the
parts' own declarations; a DAFormer run is deployed without DiDA's code."""
import ast
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.config import Config

import mmseg_dida  # noqa: F401
from mmseg_dida.deploy import (
    deploy_config,
    deploy_segmentor,
    deployed_key_map,
    deployed_name,
    replace_wrappers,
    save_deployable,
    training_segmentor,
    wrapper_classes,
)
from mmseg_dida.models.backbones import DiffusionEncoder
from tests.helpers.uda import build_model as build
from tests.helpers.uda import flat_segmentor
from tests.helpers.uda import flat_uda as uda

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG = flat_segmentor()
#: The modules of DiDA; deploying a DAFormer run needs none of them.
DIDA_MODULES = ('mmseg_dida.models.uda.dida', 'mmseg_dida.models.backbones.diffusion_encoder',
                'mmseg_dida.engine.hooks.dida_hook', 'mmseg_dida.models.decode_heads.recon_head',
                'mmseg_dida.models.losses.dic_loss')






def _perturbed(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return model


@pytest.mark.parametrize('plugins', [[], [dict(type='DiDA', recon_channels=8)]],
                         ids=['daformer', 'dida'])
def test_deploy_segmentor_is_the_students_clean_path(plugins):
    model = _perturbed(build(uda(plugins)))
    deployed = deploy_segmentor(model)
    baseline = build(SEG)
    assert type(deployed) is type(baseline)
    assert list(deployed.state_dict()) == list(baseline.state_dict())
    student = training_segmentor(model)
    assert student is model.student
    assert deployed is not student  # a copy; the training model is unchanged
    assert isinstance(student.backbone, DiffusionEncoder) == bool(plugins)
    x = torch.randn(1, 3, 32, 64)
    metas = [dict(img_shape=(32, 64), ori_shape=(32, 64), pad_shape=(32, 64))]
    model.eval(), deployed.eval()
    assert torch.equal(deployed.encode_decode(x, metas), student.encode_decode(x, metas))


def test_a_plain_segmentor_deploys_as_itself():
    seg = build(SEG)
    assert training_segmentor(seg) is seg
    assert list(deploy_segmentor(seg).state_dict()) == list(seg.state_dict())


class _Wrapper(torch.nn.Module):
    """A wrapper that declares the contract: ``inner`` deploys, ``extra`` does not."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.extra = inner, torch.nn.Linear(2, 2)

    def deploy_module(self):
        return self.inner

    @staticmethod
    def deployed_state_key(key):
        return key[len('inner.'):] if key.startswith('inner.') else None


def test_wrappers_are_replaced_by_their_declaration_not_their_type():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), _Wrapper(torch.nn.Sequential(
        torch.nn.Linear(4, 4), _Wrapper(torch.nn.Linear(4, 5)))))
    key_map = deployed_key_map(net)
    assert key_map == {'0.weight': '0.weight', '0.bias': '0.bias',
                       '1.inner.0.weight': '1.0.weight', '1.inner.0.bias': '1.0.bias',
                       '1.inner.1.inner.weight': '1.1.weight',
                       '1.inner.1.inner.bias': '1.1.bias',
                       '1.inner.1.extra.weight': None, '1.inner.1.extra.bias': None,
                       '1.extra.weight': None, '1.extra.bias': None}
    training_state = net.state_dict()
    deployed = replace_wrappers(net)
    assert isinstance(deployed[1], torch.nn.Sequential)
    assert isinstance(deployed[1][1], torch.nn.Linear)
    state = deployed.state_dict()
    assert sorted(state) == sorted(v for v in key_map.values() if v)
    assert all(torch.equal(state[dep], training_state[k])
               for k, dep in key_map.items() if dep)
    assert isinstance(replace_wrappers(_Wrapper(torch.nn.Linear(1, 1))), torch.nn.Linear)


def test_the_diffusion_encoder_describes_its_own_layout():
    model = _perturbed(build(uda([dict(type='DiDA', recon_channels=8)])))
    student = model.student
    key_map = deployed_key_map(student)
    deployed = deploy_segmentor(model).state_dict()
    assert sorted(v for v in key_map.values() if v) == sorted(deployed)
    training = student.state_dict()
    assert all(torch.equal(deployed[dep], training[k]) for k, dep in key_map.items()
               if dep)
    dropped = {k.split('.')[1] for k, dep in key_map.items() if dep is None}
    assert dropped == {'g_prime', 'time_embed', 'film'}  # g' and its FiLM: training only
    # without the training model: the registered wrapper class's own rule
    assert DiffusionEncoder in wrapper_classes()
    for key, dep in key_map.items():
        assert deployed_name(key, deployed) == dep
    assert deployed_name('backbone.backbone.layers.0.0.projection.weight', {}) is None


def test_deploy_config_drops_training_only_hooks_by_attribute():
    cfg = Config(dict(model=uda(), custom_hooks=[
        dict(type='UDAVisualizationHook'), dict(type='DiDAHook'),
        dict(type='PseudoLabelStatsHook'), dict(type='EmptyCacheHook'),
        dict(type='NotARegisteredHook')]))
    plain = deploy_config(cfg)
    assert plain.model.type == 'EncoderDecoder'
    assert plain.model.backbone == cfg.model.segmentor.backbone
    assert [h['type'] for h in plain.custom_hooks] == ['EmptyCacheHook',
                                                        'NotARegisteredHook']
    assert len(cfg.custom_hooks) == 5 and cfg.model.type == 'DACS'  # unchanged


def test_deploy_config_drops_the_training_lifecycle_of_the_schedules():
    """The default hooks a schedule declares for training (graceful stop, the
    non-finite guard, deferred runtime info, speed options) stay behind; the
    standard ones (logger, checkpoint, visualisation) are kept."""
    cfg = Config.fromfile(osp.join(REPO, 'configs/dida/daformer_mit_tiny_procedural_dida.py'))
    assert {'graceful_stop', 'nonfinite_loss', 'runtime_info',
            'speed_options'} <= set(cfg.default_hooks)
    plain = deploy_config(cfg)
    assert set(plain.default_hooks) == set(cfg.default_hooks) - {
        'graceful_stop', 'nonfinite_loss', 'runtime_info', 'speed_options'}
    assert plain.default_hooks.checkpoint == cfg.default_hooks.checkpoint
    cfg.work_dir = 'work_dirs/the_training_run'  # not the deployed model's folder
    assert 'work_dir' not in deploy_config(cfg) and cfg.work_dir


def test_save_deployable_writes_the_plain_checkpoint_and_config(tmp_path):
    model = _perturbed(build(uda([dict(type='DiDA', recon_channels=8)])))
    cfg = Config(dict(default_scope='mmseg', model=uda(), custom_hooks=[]))
    ckpt, cfg_path = save_deployable(model, cfg, str(tmp_path), 'net')
    assert (ckpt, cfg_path) == (str(tmp_path / 'net.pth'), str(tmp_path / 'net_config.py'))
    saved = torch.load(ckpt, weights_only=False)
    plain = build(Config.fromfile(cfg_path).model)
    plain.load_state_dict(saved['state_dict'], strict=True)
    assert saved['meta']['num_params'] == sum(p.numel() for p in plain.parameters())
    assert sorted(os.listdir(tmp_path)) == ['net.pth', 'net_config.py']
    assert save_deployable(model, None, str(tmp_path), 'bare')[1] is None


def _imports(path):
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


@pytest.mark.parametrize('tool', ['tools/export.py', 'tools/infer.py'])
def test_export_tools_import_no_dida_module(tool):
    names = set(_imports(osp.join(REPO, tool)))
    assert 'mmseg_dida.deploy' in names
    assert not names & set(DIDA_MODULES)


def test_daformer_run_deploys_with_didas_modules_unimportable(tmp_path):
    """In a fresh interpreter whose package ``__init__`` files (which register every
    component, DiDA's too) are bypassed and DiDA's modules raise on import: the
    DAFormer model is built, saved, deployed, written and loaded back both ways."""
    script = textwrap.dedent(f"""
        import importlib.abc, os, sys, types
        REPO = {REPO!r}
        BLOCKED = {DIDA_MODULES!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name in BLOCKED:
                    raise ImportError(name + ' imported by the deploy path')

        sys.meta_path.insert(0, Block())
        for folder, _, files in os.walk(os.path.join(REPO, 'mmseg_dida')):
            if '__init__.py' in files:  # bare packages: only what is imported runs
                name = os.path.relpath(folder, REPO).replace(os.sep, '.')
                sys.modules[name] = types.ModuleType(name)
                sys.modules[name].__path__ = [folder]
        from mmseg_dida import compat
        compat.apply()
        import torch
        from mmengine.config import Config, ConfigDict
        from mmengine.registry import init_default_scope
        from mmseg.registry import MODELS
        import mmseg_dida.models.uda.dacs  # noqa  the DAFormer components
        import mmseg_dida.models.decode_heads.weighted_loss  # noqa
        from mmseg_dida.deploy.core import save_deployable
        from mmseg_dida.deploy.model_loading import build_model_from_checkpoint

        init_default_scope('mmseg')
        seg = {SEG!r}
        cfg = Config(dict(default_scope='mmseg', custom_hooks=[], model=dict(
            type='DACS', segmentor=seg, pseudo_weight_ignore_top=0,
            pseudo_weight_ignore_bottom=0)))
        model = MODELS.build(ConfigDict(cfg.model))
        torch.save(dict(state_dict=model.state_dict()), {str(tmp_path / 'run.pth')!r})
        model, report = build_model_from_checkpoint(cfg, {str(tmp_path / 'run.pth')!r})
        assert report.exact and report.layout == 'same', report
        ckpt, cfg_path = save_deployable(model, cfg, {str(tmp_path)!r})
        plain, report = build_model_from_checkpoint(Config.fromfile(cfg_path), ckpt)
        assert report.layout == 'same' and report.exact
        plain, report = build_model_from_checkpoint(Config.fromfile(cfg_path),
                                                    {str(tmp_path / 'run.pth')!r})
        assert report.layout == 'uda->segmentor' and report.exact
        _, report = build_model_from_checkpoint(cfg, ckpt)
        assert report.layout == 'segmentor->uda' and report.exact
        loaded = [m for m in BLOCKED if m in sys.modules]
        assert not loaded, loaded
        print('deployed without DiDA')
        """)
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    res = subprocess.run([sys.executable, '-c', script], capture_output=True,
                         text=True, cwd=REPO, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'deployed without DiDA' in res.stdout

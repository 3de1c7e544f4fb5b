"""Speed options (mmseg_dida/engine/speed_options.py): each leaves the step's maths as
it is -- fused AdamW updates equal torch's default ones to float rounding,
channels_last gives the contiguous model's outputs, losses and updates, compile keeps
the state_dict keys and a train step's result -- and the config key ``speed`` / the
tools/train.py flags reach them, a wrong key failing with one line that names it.

Tolerances: float32 rounding of sums taken in another order, after two steps of a
toy DACS(+DiDA) model: 1e-5 relative to each tensor's scale (1e-6 for an optimiser
update alone). The model comparisons under channels_last and compile step with SGD:
Adam divides each gradient by its own running scale, so a parameter whose gradient is
exactly zero in exact arithmetic (the attention's key bias: softmax ignores it) moves
by up to lr in the direction of its rounding noise, which another summation order
draws anew; SGD moves it by lr x that noise."""
import copy
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

import mmseg_dida  # noqa: F401
from mmseg_dida.engine import speed_options as so
from mmseg_dida.engine.hooks import SpeedOptionsHook
from tests.helpers.uda import build_dacs, make_batch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN = osp.join(REPO, 'tools/train.py')
CONFIG = osp.join(REPO, 'configs/dida/daformer_mit_tiny_procedural_dida.py')
DIDA = dict(type='DiDA', recon_channels=8)
ADAMW = dict(type='AdamW', lr=1e-3, weight_decay=0.01)
SGD = dict(type='SGD', lr=0.1, momentum=0.9)

spec = importlib.util.spec_from_file_location('train_tool', TRAIN)
train_tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_tool)


def dida_model():
    return build_dacs(plugins=[DIDA], pseudo_weight_ignore_top=0,
                      pseudo_weight_ignore_bottom=0, imnet_feature_dist_classes=None)


def wrapper(model, optimizer=ADAMW, constructor=None):
    cfg = dict(type='OptimWrapper', optimizer=dict(optimizer))
    if constructor:
        cfg['constructor'] = constructor
    return build_optim_wrapper(model, cfg)


def steps(model, optim_wrapper, n=2):
    """``n`` train steps on fixed batches; the logged losses of each."""
    logs = []
    for i in range(n):
        torch.manual_seed(100 + i)
        log = model.train_step(make_batch(seed=i), optim_wrapper)
        logs.append({k: float(v) for k, v in log.items()})
    return logs


def assert_close_tensors(a, b, rtol=1e-5, what='', atol=0.0):
    for (name, x), (_, y) in zip(a, b):
        x, y = x.detach(), y.detach()
        scale = max(float(x.abs().max()), 1e-3)
        err = float((x - y).abs().max())
        assert err <= rtol * scale + atol, \
            f'{what}{name}: {err:.3g} > {rtol} x {scale:.3g} + {atol}'


def assert_close_logs(a, b, rtol=1e-5):
    for la, lb in zip(a, b):
        assert la.keys() == lb.keys()
        for k in la:
            assert lb[k] == pytest.approx(la[k], rel=rtol, abs=1e-6), k


# ------------------------------------------------------------------ fused AdamW
def test_cpu_has_a_fused_adamw_and_its_updates_equal_the_default_ones():
    """torch 2.14 has a fused Adam kernel on the CPU: 20 updates of the same
    parameters with the same gradients agree with torch's default (a per-tensor
    loop on the CPU) and with foreach to 1e-6 of the parameters' scale."""
    torch.manual_seed(0)
    params = [torch.randn(8, 3, 3, 3), torch.randn(16), torch.randn(32, 8)]
    runs = {}
    for kind in ('default', 'foreach', 'fused'):
        ps = [p.clone().requires_grad_() for p in params]
        extra = {} if kind == 'default' else {kind: True}
        opt = torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.01, **extra)
        g = torch.Generator().manual_seed(1)
        for _ in range(20):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        runs[kind] = [(str(i), p.detach()) for i, p in enumerate(ps)]
        assert getattr(opt, '_step_supports_amp_scaling', False) == (kind == 'fused')
    moved = max(float((a - b).abs().max()) for (_, a), b in zip(runs['default'], params))
    assert moved > 0.1  # the updates did something
    assert_close_tensors(runs['default'], runs['fused'], 1e-6, 'fused ')
    assert_close_tensors(runs['default'], runs['foreach'], 1e-6, 'foreach ')


def test_fused_train_steps_equal_the_default_ones():
    """DACS + DiDA steps with ``fused_optimizer=True`` (built through the config key)
    against torch's default AdamW: the same weights after the first step (same
    gradients: 1e-6 of the weights' scale + 1e-5 of lr), the same losses in the
    second."""
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(ADAMW)),
                      speed=dict(fused_optimizer=True)))
    so.apply_speed_options(cfg)
    assert cfg.optim_wrapper.optimizer.fused is True
    plain, fused = dida_model(), dida_model()
    ow_plain, ow_fused = wrapper(plain), build_optim_wrapper(fused, cfg.optim_wrapper)
    assert ow_fused.optimizer.defaults['fused'] is True
    assert ow_plain.optimizer.defaults['fused'] is None
    before = [p.detach().clone() for p in plain.parameters()]
    logs_a, logs_b = steps(plain, ow_plain, 1), steps(fused, ow_fused, 1)
    assert_close_logs(logs_a, logs_b, 0)  # the same forward
    assert any(not torch.equal(a, b) for a, b in zip(before, plain.parameters()))
    assert_close_tensors(list(plain.named_parameters()), list(fused.named_parameters()),
                         1e-6, atol=1e-5 * ADAMW['lr'])
    assert_close_logs(steps(plain, ow_plain, 1), steps(fused, ow_fused, 1))


def test_auto_chooses_fused_only_for_cuda_parameters(monkeypatch):
    adamw = dict(type='AdamW', lr=1e-3)
    assert so.choose_fused(adamw, {'cuda'}) is True
    assert so.choose_fused(adamw, {'cpu'}) is None
    assert so.choose_fused(adamw, {'cuda', 'cpu'}) is None
    assert so.choose_fused(adamw, set()) is None
    assert so.choose_fused(dict(adamw, type='Adam'), {'cuda'}) is True
    assert so.choose_fused(dict(type='SGD', lr=0.1), {'cuda'}) is None
    assert so.choose_fused(dict(adamw, foreach=False), {'cuda'}) is None  # its own
    assert so.choose_fused(dict(adamw, fused=False), {'cuda'}) is None
    assert so.choose_fused(adamw, {'cuda'}, False) is None
    assert so.choose_fused(adamw, {'cpu'}, True) is True
    # the constructor asks the parameters: CPU ones stay on torch's default ...
    model = dida_model()
    ow = wrapper(model, constructor='SpeedOptimWrapperConstructor')
    assert ow.optimizer.defaults['fused'] is None
    # ... and builds the fused kernel where their device is one 'auto' fuses on
    monkeypatch.setattr(so, 'AUTO_FUSED_DEVICES', ('cpu', ))
    ow = wrapper(model, constructor='SpeedOptimWrapperConstructor')
    assert ow.optimizer.defaults['fused'] is True
    assert all(g['fused'] for g in ow.optimizer.param_groups)
    ow = wrapper(model, dict(ADAMW, foreach=False), 'SpeedOptimWrapperConstructor')
    assert ow.optimizer.defaults['fused'] is None  # the config's own choice stands


def test_a_resumed_optimizer_keeps_the_kernel_it_was_built_with():
    """torch's load_state_dict takes fused/foreach from the saved param groups: a
    fused optimiser resumed from a default run's checkpoint would step unfused
    (and the other way round). restore_built_flags puts back what was built, with
    the step counters where that kernel keeps them."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(4, 3))
    p.grad = torch.randn(4, 3)
    saved_plain = torch.optim.AdamW([p], lr=1e-3)
    saved_plain.step()
    fused = torch.optim.AdamW([p], lr=1e-3, fused=True)
    fused.load_state_dict(saved_plain.state_dict())
    assert fused.param_groups[0]['fused'] is None  # what torch does
    assert so.restore_built_flags(fused)
    assert fused.param_groups[0]['fused'] is True
    assert fused.state[p]['step'].dtype == torch.float32
    fused.step()
    assert not so.restore_built_flags(fused)  # nothing left to change
    saved_fused = fused.state_dict()
    plain = torch.optim.AdamW([p], lr=1e-3)
    plain.load_state_dict(saved_fused)
    assert plain.param_groups[0]['fused'] is True
    assert so.restore_built_flags(plain)
    assert plain.param_groups[0]['fused'] is None
    assert plain.state[p]['step'].device.type == 'cpu'
    plain.step()
    assert float(plain.state[p]['step']) == 3


# ----------------------------------------------------------------- channels_last
def test_channels_last_gives_the_same_outputs_losses_and_updates():
    plain = dida_model()
    cl = copy.deepcopy(plain)
    ow_cl = wrapper(cl, ADAMW)
    handles = so.set_memory_format(cl, True, [ow_cl.optimizer])
    four_d = [(n, p) for n, p in cl.named_parameters() if p.dim() == 4]
    for part in ('student.backbone.backbone.', 'student.backbone.g_prime.',
                 'student.decode_head.', 'teacher.', 'imnet_model.'):
        assert any(n.startswith(part) for n, _ in four_d), part
    for n, p in four_d:
        assert p.is_contiguous(memory_format=torch.channels_last), n
    # (a 1x1 or depthwise kernel is both; MiT's patch embeddings are not)
    assert sum(not p.is_contiguous() for _, p in four_d) >= 12
    # the images entering each segmentor's backbone (student, teacher, ImageNet)
    assert len(handles) == 3
    seen = []
    hook = cl.student.backbone.backbone.layers[0][0].projection.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(
            memory_format=torch.channels_last)))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out_plain = plain.student.encode_decode(x, [dict(img_shape=(64, 64))] * 2)
        out_cl = cl.student.encode_decode(x, [dict(img_shape=(64, 64))] * 2)
    hook.remove()
    assert seen == [True]
    assert_close_tensors([('logits', out_plain)], [('logits', out_cl)])
    sgd_plain, sgd_cl = copy.deepcopy(plain), copy.deepcopy(cl)
    logs_a, logs_b = steps(sgd_plain, wrapper(sgd_plain, SGD)), steps(
        sgd_cl, wrapper(sgd_cl, SGD))
    assert_close_logs(logs_a, logs_b)
    assert_close_tensors(list(sgd_plain.named_parameters()),
                         list(sgd_cl.named_parameters()))
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in sgd_cl.parameters() if p.dim() == 4)
    steps(cl, ow_cl, 1)  # AdamW's moments, made after the switch, follow the layout
    p = cl.student.backbone.backbone.layers[0][0].projection.weight
    assert ow_cl.optimizer.state[p]['exp_avg'].is_contiguous(
        memory_format=torch.channels_last)
    # and back: parameters, moments contiguous again, no input hooks left
    assert so.set_memory_format(cl, False, [ow_cl.optimizer], handles) == []
    assert p.is_contiguous() and ow_cl.optimizer.state[p]['exp_avg'].is_contiguous()
    assert not any(m._forward_pre_hooks for m in cl.modules())


# ---------------------------------------------------------------------- compile
def test_compile_keeps_state_dict_keys_and_the_train_step():
    """The student's g and DiDA's g' compiled in place (aot_eager: traced forward and
    backward graphs run by eager kernels): same keys, same EMA pairs, same losses and
    weights after two steps; a deep copy (deployment's) is the plain module."""
    torch._dynamo.reset()
    plain = dida_model()
    compiled = copy.deepcopy(plain)
    keys = list(compiled.state_dict())
    names = so.compile_encoders(compiled, backend='aot_eager')
    assert names == ['student.backbone.backbone', 'student.backbone.g_prime']
    encoders = so.encoder_modules(compiled)
    assert all(m._compiled_call_impl is not None for m in encoders.values())
    assert list(compiled.state_dict()) == keys
    assert compiled.teacher._param_map == plain.teacher._param_map
    logs_a, logs_b = steps(plain, wrapper(plain, SGD)), steps(
        compiled, wrapper(compiled, SGD))
    assert_close_logs(logs_a, logs_b)
    assert_close_tensors(list(plain.named_parameters()),
                         list(compiled.named_parameters()))
    assert_close_tensors(list(plain.teacher.named_parameters()),
                         list(compiled.teacher.named_parameters()), what='teacher ')
    copied = copy.deepcopy(compiled.student.backbone.backbone)
    assert copied._compiled_call_impl is None


def test_encoder_modules_of_a_baseline_and_a_segmentor():
    model = build_dacs(pseudo_weight_ignore_top=0, pseudo_weight_ignore_bottom=0)
    assert list(so.encoder_modules(model)) == ['student.backbone']
    assert so.encoder_modules(model)['student.backbone'] is model.student.backbone
    assert list(so.encoder_modules(model.student)) == ['backbone']
    with pytest.raises(TypeError, match='no student backbone'):
        so.encoder_modules(torch.nn.Linear(2, 2))


# ---------------------------------------------------------- config and flags
def test_the_config_key_becomes_the_constructor_and_the_hooks_options():
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(ADAMW)),
                      custom_hooks=[dict(type='DiDAHook')]))
    speed = so.apply_speed_options(cfg)
    assert speed == so.SPEED_DEFAULTS == cfg.speed
    assert cfg.optim_wrapper.constructor == 'SpeedOptimWrapperConstructor'
    assert 'fused' not in cfg.optim_wrapper.optimizer
    assert cfg.custom_hooks == [dict(type='DiDAHook')]  # nothing added by code
    declared = dict(speed_options=dict(type='SpeedOptionsHook'))
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(ADAMW, foreach=True)),
                      default_hooks=declared,
                      speed=dict(fused_optimizer='auto', channels_last=True,
                                 compile=dict(backend='eager'))))
    so.apply_speed_options(cfg)
    assert 'constructor' not in cfg.optim_wrapper  # the config chose its kernel
    assert cfg.speed == dict(fused_optimizer='auto', channels_last=True,
                             compile=dict(backend='eager'))
    # the declared hook takes the options from the run's config
    hook = SpeedOptionsHook()
    assert (hook.channels_last, hook.compile_kwargs) == (False, None)
    hook._set(so.check_speed_options(dict(channels_last=True,
                                          compile=dict(backend='eager'))))
    assert (hook.channels_last, hook.compile_kwargs) == (True, dict(backend='eager'))
    # channels_last or compile without the hook that applies them: one line
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(ADAMW)),
                      speed=dict(channels_last=True)))
    with pytest.raises(so.SpeedOptionError, match='speed_options default hook'):
        so.apply_speed_options(cfg)
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(ADAMW)),
                      speed=dict(fused_optimizer=False)))
    so.apply_speed_options(cfg)
    assert 'constructor' not in cfg.optim_wrapper
    assert 'fused' not in cfg.optim_wrapper.optimizer


@pytest.mark.parametrize('speed,message', [
    (dict(chanels_last=True), "config key speed.chanels_last: unknown speed option "
     "(did you mean 'channels_last'?)"),
    (dict(cudnn_benchmark=True), 'env_cfg.cudnn_benchmark'),
    (dict(fused_optimizer='on'), "config key speed.fused_optimizer must be 'auto', "
     "True or False, got 'on'"),
    (dict(fused_optimizer=1), 'speed.fused_optimizer must be'),
    (dict(channels_last='yes'), "speed.channels_last must be True or False, got 'yes'"),
    (dict(compile='inductor'), 'speed.compile must be True, False or a dict'),
    (dict(compile=dict(backnd='eager')), 'config key speed.compile.backnd: not an '
     'argument of torch.compile'),
    ('fast', 'config key speed must be a dict'),
])
def test_a_wrong_speed_option_is_one_line_naming_it(speed, message):
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(ADAMW)), speed=speed))
    with pytest.raises(so.SpeedOptionError) as e:
        so.apply_speed_options(cfg)
    assert message in str(e.value) and '\n' not in str(e.value)


def test_fused_true_needs_adam():
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
                      speed=dict(fused_optimizer=True)))
    with pytest.raises(so.SpeedOptionError, match="type is 'SGD'"):
        so.apply_speed_options(cfg)
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(ADAMW, foreach=True)),
                      speed=dict(fused_optimizer=True)))
    with pytest.raises(so.SpeedOptionError, match='contradicts'):
        so.apply_speed_options(cfg)
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(ADAMW)),
                      custom_hooks=[dict(type='SpeedOptionsHook')]))
    with pytest.raises(so.SpeedOptionError, match=r'custom_hooks\[0\] is a '):
        so.apply_speed_options(cfg)


@pytest.mark.parametrize('argv,speed,cudnn', [
    ([], so.SPEED_DEFAULTS, False),
    (['--fused-optimizer', 'off', '--channels-last'],
     dict(so.SPEED_DEFAULTS, fused_optimizer=False, channels_last=True), False),
    (['--fused-optimizer', 'on', '--compile', '--cudnn-benchmark'],
     dict(so.SPEED_DEFAULTS, fused_optimizer=True, compile=True), True),
    (['--cfg-options', 'speed.compile.backend=eager', '--compile'],
     dict(so.SPEED_DEFAULTS, compile=dict(backend='eager')), False),
])
def test_train_flags_write_the_config_keys(argv, speed, cudnn, tmp_path):
    args = train_tool.parse_args([CONFIG, '--work-dir', str(tmp_path)] + argv)
    cfg, _ = train_tool.build_cfg(args)
    assert cfg.speed == speed
    assert cfg.env_cfg.cudnn_benchmark is cudnn
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'  # the rest of env_cfg stays
    # the config's own hook applies them (declared by the schedule)
    assert cfg.default_hooks.speed_options == dict(type='SpeedOptionsHook')
    assert (cfg.optim_wrapper.optimizer.get('fused') is True) == (
        speed['fused_optimizer'] is True)


def test_a_wrong_speed_key_stops_train_with_one_line(cpu_only, capsys, tmp_path):
    status = train_tool.main([CONFIG, '--work-dir', str(tmp_path / 'w'),
                              '--cfg-options', 'speed.chanels_last=True'])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {CONFIG}: config key speed.chanels_last: unknown speed "
                   "option (did you mean 'channels_last'?); the options are "
                   'fused_optimizer, channels_last, compile (cudnn benchmark: '
                   'env_cfg.cudnn_benchmark)']
    assert not (tmp_path / 'w').exists()


def test_train_with_every_option_then_resume_without(tiny_benchmark, run_tool,
                                                      tmp_path):
    """tools/train.py with a fused CPU AdamW, channels_last and compile (eager
    backend) trains DAFormer + DiDA two iterations: the hook says what it applied
    and the checkpoint has the model's own keys. Resumed with the fused kernel
    switched off, the optimiser steps unfused although the checkpoint says fused."""
    from mmseg.registry import MODELS

    from tests.test_tools.test_train_amp import FAST
    work = tmp_path / 'work'
    res = run_tool([TRAIN, CONFIG, '--work-dir', str(work), '--fused-optimizer', 'on',
                    '--channels-last', '--cfg-options', 'speed.compile.backend=eager']
                   + FAST, cwd=tiny_benchmark)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert ("speed options: AdamW fused=True; channels_last; torch.compile("
            "{'backend': 'eager'}) of student.backbone.backbone, "
            'student.backbone.g_prime') in log
    dumped = Config.fromfile(str(work / osp.basename(CONFIG)))
    assert dumped.speed == dict(fused_optimizer=True, channels_last=True,
                                compile=dict(backend='eager'))
    ckpt = torch.load(work / 'iter_2.pth', map_location='cpu', weights_only=False)
    model = MODELS.build(dumped.model)
    assert list(ckpt['state_dict']) == list(model.state_dict())
    assert all(g['fused'] for g in ckpt['optimizer']['param_groups'])
    res = run_tool([TRAIN, CONFIG, '--work-dir', str(work), '--resume',
                    '--fused-optimizer', 'off', '--cfg-options'] + FAST + [
                        'train_cfg.max_iters=3', 'train_cfg.val_interval=3'],
                   cwd=tiny_benchmark)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert ('speed options: optimizer fused/foreach as built (not as resumed); '
            'AdamW fused=False') in log
    assert 'Iter(train) [3/3]' in log

"""The DiDA plug-in inside DACS: attach, losses, gradient paths, training, deploy."""
import copy

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.optim import OptimWrapper
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import mmseg_dida  # noqa: F401
from mmseg_dida.deploy import deploy_segmentor
from mmseg_dida.models.backbones import DiffusionEncoder
from mmseg_dida.models.uda.plugin import sum_loss_groups
from tests.helpers.uda import FLAT_MIT, build_dacs, plugin_context

H, W, C = 32, 64, 4
SEGMENTOR = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[120.0] * 3,
                           std=[60.0] * 3, bgr_to_rgb=True, pad_val=0,
                           seg_pad_val=255, size=(H, W)),
    backbone=dict(FLAT_MIT),
    decode_head=dict(type='WeightedSegformerHead', in_channels=[8, 8, 8, 8],
                     in_index=[0, 1, 2, 3], channels=8, dropout_ratio=0.0,
                     num_classes=C, align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=dict(), test_cfg=dict(mode='whole'))


def packed(n, seed, labelled=True):
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, H, W), generator=g, dtype=torch.uint8))
        s = SegDataSample(metainfo=dict(img_shape=(H, W), ori_shape=(H, W),
                                        pad_shape=(H, W)))
        if labelled:
            s.gt_sem_seg = PixelData(
                data=torch.randint(0, C, (1, H, W), generator=g))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def batch(seed=0):
    return dict(source=packed(2, seed), target=packed(2, seed + 100, False))


def build(**dida):
    """DACS around SEGMENTOR with DiDA (``dida``: its arguments), both as ConfigDicts
    as a config gives them (mmseg reads ``test_cfg.mode`` as an attribute)."""
    return build_dacs(ConfigDict(SEGMENTOR),
                      [ConfigDict(type='DiDA', recon_channels=8, **dida)],
                      imnet_feature_dist_lambda=0.0, pseudo_weight_ignore_top=0,
                      pseudo_weight_ignore_bottom=0)


def context(model, seed=0):
    """The plug-in context of ``batch(seed)``: pseudo labels from the global
    generator, pseudo weight 0.7."""
    return plugin_context(model, batch(seed), torch.randint(0, C, (2, H, W)),
                          torch.full((2, H, W), 0.7))


def test_attach_wraps_student_teacher_keeps_only_g():
    model = build()
    enc = model.student.backbone
    assert isinstance(enc, DiffusionEncoder) and enc.mode == 'full'
    # init_weights copied g into g'
    for p, q in zip(enc.backbone.parameters(), enc.g_prime.parameters()):
        assert torch.equal(p, q)
    assert not hasattr(model.plugins[0], 'student')
    assert model.plugins[0].recon_head.arch == 'full'
    # The teacher is the plain segmentor: no g', FiLMs or time MLP to hold/average.
    teacher = model.teacher_model
    assert not any(isinstance(m, DiffusionEncoder) for m in teacher.modules())
    plain = MODELS.build(copy.deepcopy(SEGMENTOR))
    assert ({k: v.shape for k, v in teacher.state_dict().items()} ==
            {k: v.shape for k, v in plain.state_dict().items()})


def test_teacher_ema_follows_g_not_g_prime():
    """phi <- a phi + (1 - a) theta_g for the teacher's backbone, with g' moved far
    away from g: a name-by-position pairing would average g' into the teacher."""
    model = build()
    enc = model.student.backbone
    with torch.no_grad():
        for p in enc.g_prime.parameters():
            p.add_(100.0)
        for p in enc.backbone.parameters():
            p.add_(0.5)
    phi0 = {k: v.clone() for k, v in model.teacher_model.named_parameters()}
    a = model.teacher.update(model.student, 9)
    assert a == pytest.approx(0.9)
    student = dict(model.student.named_parameters())
    for name, phi in model.teacher_model.named_parameters():
        theta = student[name.replace('backbone.', 'backbone.backbone.', 1)
                        if name.startswith('backbone.') else name]
        torch.testing.assert_close(phi, a * phi0[name] + (1 - a) * theta)
    # copy_from (iteration 0) makes the teacher equal to the student's g and heads
    model.teacher.copy_from(model.student)
    assert torch.equal(model.teacher_model.backbone.layers[0][0].projection.weight,
                       enc.backbone.layers[0][0].projection.weight)


def test_losses_gradient_paths():
    model = build()
    ctx = context(model)
    losses = sum_loss_groups(model.plugins[0].loss_groups(ctx))
    assert set(losses) == {'loss_dic_src', 'loss_dic_tgt', 'loss_recon', 'dida_t',
                           'dida_abar'}
    assert not losses['dida_t'].requires_grad
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    enc = model.student.backbone
    for part in (enc.g_prime, enc.film, enc.time_embed, enc.backbone,
                 model.student.decode_head, model.plugins[0].recon_head):
        assert sum(p.grad.abs().sum() for p in part.parameters()
                   if p.grad is not None) > 0, type(part).__name__
    assert all(p.grad is None for p in model.teacher_model.parameters())
    # clean path: g' and the FiLMs get nothing
    model.zero_grad(set_to_none=True)
    sum(v for k, v in model.student.loss(
        ctx.src_inputs, ctx.src_data_samples).items() if 'loss' in k).backward()
    assert all(p.grad is None for p in enc.g_prime.parameters())
    assert all(p.grad is None for p in enc.film.parameters())


def test_lambda_scaling_and_batching_equivalence():
    model = build(lambda_d=1.0, lambda_r=1.0)
    ctx = context(model)
    torch.manual_seed(5)
    a = sum_loss_groups(model.plugins[0].loss_groups(ctx))
    model2 = build(lambda_d=0.5, lambda_r=5.0, memory_saving='per_domain')
    ctx2 = context(model2)
    ctx2.pseudo_label = ctx.pseudo_label
    torch.manual_seed(5)
    b = sum_loss_groups(model2.plugins[0].loss_groups(ctx2))
    # same weights, same draws: LayerNorm network -> batching changes nothing
    assert b['loss_dic_src'].item() == pytest.approx(0.5 * a['loss_dic_src'].item(),
                                                     rel=1e-5)
    assert b['loss_dic_tgt'].item() == pytest.approx(0.5 * a['loss_dic_tgt'].item(),
                                                     rel=1e-5)
    assert b['loss_recon'].item() == pytest.approx(5.0 * a['loss_recon'].item(),
                                                   rel=1e-5)


@pytest.mark.parametrize('dida', [
    dict(mode='none', recon=None, lambda_r=0.0),       # L_D only
    dict(mode='g_time', recon=None, lambda_r=0.0),     # + time embedding in g
    dict(mode='g_time', recon='linear'),               # + L_R
    dict(mode='g_time', recon='full'),                 # + h'
    dict(mode='full', recon='full'),                   # + g' (full)
])
def test_ablation_rows_train(dida):
    model = build(**dida)
    model.train()
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    for it in range(2):
        log = model.train_step(batch(it), optim)
    assert 'loss_dic_src' in log and 'loss_dic_tgt' in log
    assert ('loss_recon' in log) == (dida.get('recon', 'full') is not None)
    assert torch.isfinite(log['loss'])
    assert int(model.local_iter) == 2


def test_deploy_equals_baseline_and_clean_predictions():
    model = build()
    model.train()
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    model.train_step(batch(0), optim)
    deployed = deploy_segmentor(model)
    baseline = MODELS.build(ConfigDict(copy.deepcopy(SEGMENTOR)))
    names = [n for n, _ in deployed.named_parameters()]
    assert names == [n for n, _ in baseline.named_parameters()]
    assert sum(p.numel() for p in deployed.parameters()) == sum(
        p.numel() for p in baseline.parameters())
    assert set(deployed.state_dict()) == set(baseline.state_dict())
    baseline.load_state_dict(deployed.state_dict(), strict=True)
    model.eval()
    baseline.eval()
    data = batch(3)['target']
    with torch.no_grad():
        ref = model.test_step(data)
        out = baseline.test_step(data)
    for r, o in zip(ref, out):
        assert torch.equal(r.seg_logits.data, o.seg_logits.data)
    assert isinstance(model.student.backbone, DiffusionEncoder)  # model untouched


def _grads_by_groups(model, ctx):
    """Back-propagate each of the plug-in's loss groups as DACS does; return the
    summed losses and the gradients."""
    totals = {}
    for group in model.plugins[0].loss_groups(ctx):
        sum(v for k, v in group.items() if 'loss' in k).backward()
        for k, v in group.items():
            totals[k] = totals.get(k, 0) + v.detach()
    return totals, {n: p.grad.clone() for n, p in model.named_parameters()
                    if p.grad is not None}


@pytest.mark.parametrize('saving', ['per_domain', 'g_prime', 'encoders'])
def test_memory_saving_gives_same_losses_and_gradients(saving):
    results = []
    for mode in ('none', saving):
        model = build(memory_saving=mode)
        ctx = context(model)
        ctx.pseudo_label = torch.arange(2 * H * W).remainder(C).view(2, H, W)
        torch.manual_seed(3)
        results.append(_grads_by_groups(model, ctx))
    (la, ga), (lb, gb) = results
    for k in ('loss_dic_src', 'loss_dic_tgt', 'loss_recon', 'dida_t', 'dida_abar'):
        assert lb[k].item() == pytest.approx(la[k].item(), rel=1e-5), k
    assert set(ga) == set(gb)
    for n in ga:
        assert torch.allclose(ga[n], gb[n], rtol=1e-4, atol=1e-6), n


def test_per_domain_groups_are_computed_lazily():
    """The target pass must not run before the source group was handed out (and
    back-propagated): that is what bounds the memory to one domain's activations."""
    model = build(memory_saving='per_domain')
    calls = []
    model.student.decode_head.register_forward_hook(
        lambda m, i, o: calls.append(o.shape[0]))
    groups = model.plugins[0].loss_groups(context(model))
    first = next(groups)
    assert calls == [2] and set(first) == {'loss_dic_src', 'loss_recon'}
    sum(first.values()).backward()
    second = next(groups)
    assert calls == [2, 2]
    assert set(second) == {'loss_dic_tgt', 'loss_recon', 'dida_t', 'dida_abar'}
    assert next(groups, None) is None
    joint = build()
    calls.clear()
    joint.student.decode_head.register_forward_hook(
        lambda m, i, o: calls.append(o.shape[0]))
    assert len(list(joint.plugins[0].loss_groups(context(joint)))) == 1
    assert calls == [4]  # one batched pass over source and target


def test_dacs_step_sums_repeated_group_keys_in_the_log():
    """DACS back-propagates both groups; loss_recon is logged as their sum, equal to
    the joint pass's single loss_recon (same draws)."""
    logs = []
    for mode in ('none', 'per_domain'):
        model = build(memory_saving=mode)
        optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0))
        torch.manual_seed(11)
        logs.append(model.train_step(batch(0), optim))
    for k in ('loss_recon', 'loss_dic_src', 'loss_dic_tgt', 'dida_t', 'loss'):
        assert logs[1][k].item() == pytest.approx(logs[0][k].item(), rel=1e-5), k


def test_source_only_context_gives_source_terms_only():
    model = build()
    ctx = context(model)
    ctx.pseudo_label = ctx.pseudo_weight = None
    torch.manual_seed(0)
    losses = sum_loss_groups(model.plugins[0].loss_groups(ctx))
    assert 'loss_dic_tgt' not in losses
    assert torch.isfinite(losses['loss_dic_src']) and losses['loss_recon'] > 0


@pytest.mark.parametrize('bad, message', [
    (dict(memory_saving='chunked'), "memory_saving must be one of \\['none'"),
    (dict(recon='conv'), 'recon must be one of'),
    (dict(lambda_r=-1.0), 'lambda_r must be a number >= 0'),
    (dict(lambda_d='abc'), "lambda_d must be a number >= 0, got 'abc'"),
    (dict(lambda_r=0.0), "lambda_r=0 with recon='full'; set recon=None"),
    (dict(mode='g_only'), "mode must be one of \\['full', 'g_time', 'none'\\]"),
    (dict(seg_path='own'), 'seg_path must be one of'),
    (dict(ld_t_weight='snr'), 'ld_t_weight must be one of'),
    (dict(ld_max_t=0), 'ld_max_t must be None or an int >= 1'),
    (dict(degraded_fd_reference='teacher'), 'degraded_fd_reference must be one of'),
    (dict(compensation_init='ones'), 'compensation_init must be one of'),
])
def test_bad_options_are_refused_with_the_option_named(bad, message):
    with pytest.raises(ValueError, match=message):
        MODELS.build(dict(type='DiDA', **bad))


def _fixed_t(model, t):
    """Make the plug-in's degradation draw the timesteps ``t`` (per source image)."""
    deg = model.plugins[0].degradation
    deg.sample_t = lambda n, device=None, generator=None: torch.tensor(t)[:n]


def test_ld_weight_by_t_and_max_t():
    model = build(ld_t_weight='abar', ld_max_t=50)
    plugin = model.plugins[0]
    t = torch.tensor([0, 49, 50, 99])
    w = plugin.ld_image_weight(t)
    abar = plugin.degradation.abar
    assert torch.equal(w, torch.stack([abar[0], abar[49], abar.new_zeros(()),
                                       abar.new_zeros(())]))
    assert build().plugins[0].ld_image_weight(t) is None  # the paper: uniform
    # every image at t >= ld_max_t: no L_D at all, L_R still trains h'
    model = build(ld_max_t=50)
    _fixed_t(model, [80, 90])
    losses = sum_loss_groups(model.plugins[0].loss_groups(context(model)))
    assert losses['loss_dic_src'].item() == 0 and losses['loss_dic_tgt'].item() == 0
    assert losses['loss_recon'] > 0


def test_time_conditioned_seg_path_has_its_own_fusion():
    """seg_path='time_conditioned': degraded images are segmented through h's level
    embeddings + a time FiLM + a fusion of the plug-in's own, h's classifier shared;
    h's own fusion gets no gradient from L_D and the deployed model is unchanged."""
    model = build(seg_path='time_conditioned', recon=None)
    plugin = model.plugins[0]
    head = model.student.decode_head
    path = plugin.seg_path_module
    assert path is not None and path.fusion is not head.fusion_conv
    losses = sum_loss_groups(plugin.loss_groups(context(model)))
    (losses['loss_dic_src'] + losses['loss_dic_tgt']).backward()

    def grad(module):
        return sum(p.grad.abs().sum() for p in module.parameters()
                   if p.grad is not None)

    assert grad(head.fusion_conv) == 0
    for part in (path.fusion, path.film, path.time_embed, head.convs, head.conv_seg):
        assert grad(part) > 0
    assert set(deploy_segmentor(model).state_dict()) == set(
        MODELS.build(ConfigDict(copy.deepcopy(SEGMENTOR))).state_dict())
    with pytest.raises(TypeError, match='has no embed_levels'):
        from mmseg_dida.models.decode_heads import TimeConditionedSegPath
        TimeConditionedSegPath(torch.nn.Conv2d(1, 1, 1))


def test_degraded_feature_distance_references():
    from mmseg_dida.models.utils.feature_distance import masked_feat_dist
    model = build(degraded_fd_weight=0.5, degraded_fd_reference='clean')
    plugin = model.plugins[0]
    ctx = context(model)
    _fixed_t(model, [30, 60])
    plugin.degradation.generator()  # seeded now, so its state can be replayed
    state = plugin.degradation.rng_state()
    losses = sum_loss_groups(plugin.loss_groups(ctx))
    # clean reference: 0.5 * mean L2 distance of the degraded source features (last
    # level) to the student's own clean features, recomputed from the same draws
    plugin.degradation.set_rng_state(state)
    deg = plugin.degradation.degrade_pair(ctx.src_inputs, ctx.tgt_inputs)
    with torch.no_grad():
        fused, _ = plugin.segment_degraded(model.student, deg['x_t'], deg['t'])
        ref = model.student.extract_feat(ctx.src_inputs)[-1]
    expected = 0.5 * masked_feat_dist(fused[-1][:2], ref)
    assert losses['loss_dic_fd'].item() == pytest.approx(expected.item(), rel=1e-5)
    losses['loss_dic_fd'].backward()
    enc = model.student.backbone
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in enc.g_prime.parameters())
    # 'imnet' (the default reference) needs the host's feature distance
    model = build(degraded_fd_weight=0.5)
    with pytest.raises(RuntimeError, match="needs the host's ImageNet feature"):
        sum_loss_groups(model.plugins[0].loss_groups(context(model)))
    calls = []

    def host_fd(img, gt, out):  # out: the student's degraded forward (contract)
        calls.append((img, gt.shape, out.feats[-1].shape))
        return out.feats[-1].abs().mean()

    ctx = context(model)
    ctx.imnet_feature_distance = host_fd
    out = sum_loss_groups(model.plugins[0].loss_groups(ctx))
    img, gt_shape, f_shape = calls[0]
    assert img is ctx.src_inputs and gt_shape == (2, 1, H, W) and f_shape[0] == 2
    assert out['loss_dic_fd'] > 0


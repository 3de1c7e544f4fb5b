"""DiDA with HRDA (and MIC): the degraded passes go through HRDA's multi-resolution
path and its own weighted losses, h' reads the detail crop's fused features, and the
student's normalisation buffers stay untouched by DiDA (but not by MIC)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.deploy import deploy_segmentor
from mmseg_dida.models.backbones import DiffusionEncoder
from mmseg_dida.models.segmentors import HRDAEncoderDecoder
from mmseg_dida.models.uda.plugin import sum_loss_groups
from mmseg_dida.models.utils import norm_buffers
from tests.helpers.uda import build_dacs, make_batch, tiny_hrda, tiny_segmentor
from tests.helpers.uda import toy_context as context

BN = dict(type='BN', requires_grad=True)
DIDA = dict(type='DiDA', recon_channels=8, degradation=dict(type='Degradation', seed=4))


def bn_hrda(**kwargs):
    """HRDA around a toy ResNet (BatchNorm in g and g') with BatchNorm heads."""
    cfg = tiny_hrda(**kwargs)
    cfg['backbone'] = dict(type='ResNetV1c', depth=18, stem_channels=8, base_channels=8,
                           num_stages=4, out_indices=(0, 1, 2, 3), norm_cfg=BN)
    cfg['decode_head']['single_scale_head'].update(in_channels=[8, 16, 32, 64],
                                                   norm_cfg=BN)
    return cfg


def build(segmentor=None, plugins=(DIDA, ), **kwargs):
    """DACS around ``segmentor`` (the tiny HRDA) with ``plugins`` (DiDA); ``kwargs``
    override these tests' DACS arguments."""
    args = dict(imnet_feature_dist_lambda=0.0, pseudo_weight_ignore_top=0,
                pseudo_weight_ignore_bottom=0)
    args.update(kwargs)
    return build_dacs(tiny_hrda() if segmentor is None else segmentor, plugins, **args)


def _ce(logits, label, weight=None):
    logits = F.interpolate(logits, size=label.shape[-2:], mode='bilinear',
                           align_corners=False)
    ce = F.cross_entropy(logits, label, reduction='none', ignore_index=255)
    return (ce if weight is None else ce * weight).mean()


def test_degraded_losses_are_hrdas_own_weighted_losses_and_recon_reads_the_crop():
    model = build()
    plugin = model.plugins[0]
    enc = model.student.backbone
    assert isinstance(model.student, HRDAEncoderDecoder)
    assert isinstance(enc, DiffusionEncoder)
    ctx = context(model)
    torch.manual_seed(11)
    losses = sum_loss_groups(plugin.loss_groups(ctx))
    assert set(losses) == {'loss_dic_src', 'loss_dic_tgt', 'loss_recon', 'dida_t',
                           'dida_abar'}
    # by hand, with the same draws: t and eps from the degradation's seed, the crop
    # from the global generator
    plugin.degradation.set_rng_state(None)
    deg = plugin.degradation.degrade_pair(ctx.src_inputs, ctx.tgt_inputs)
    torch.manual_seed(11)
    with enc.timestep(deg['t']):
        out = model.student.uda_forward(deg['x_t'])
    y1, y2, x1, x2 = out.pixel_box
    fused, _, hr = out.logits
    labels = torch.cat([ctx.src_labels, ctx.pseudo_label])
    q = ctx.pseudo_weight
    ref_src = 0.9 * _ce(fused[:2], labels[:2]) + 0.1 * _ce(
        hr[:2], labels[:2, y1:y2, x1:x2])
    ref_tgt = 0.9 * _ce(fused[2:], labels[2:], q) + 0.1 * _ce(
        hr[2:], labels[2:, y1:y2, x1:x2], q[:, y1:y2, x1:x2])
    assert losses['loss_dic_src'].item() == pytest.approx(0.5 * ref_src.item(), rel=1e-5)
    assert losses['loss_dic_tgt'].item() == pytest.approx(0.5 * ref_tgt.item(), rel=1e-5)
    # h' on the detail crop's fused features, against the crop of eps
    pred = plugin.recon_head(out.pixel_feats, deg['t'])
    eps = F.interpolate(deg['target'][..., y1:y2, x1:x2], size=pred.shape[-2:],
                        mode='area')
    assert losses['loss_recon'].item() == pytest.approx(
        5.0 * F.mse_loss(pred, eps).item(), rel=1e-5)


def test_gradients_reach_g_prime_and_both_heads():
    model = build()
    losses = sum_loss_groups(model.plugins[0].loss_groups(context(model)))
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    enc = model.student.backbone
    head = model.student.decode_head
    for part in (enc.g_prime, enc.film, enc.backbone, head.head, head.scale_attention,
                 model.plugins[0].recon_head):
        assert sum(p.grad.abs().sum() for p in part.parameters()
                   if p.grad is not None) > 0, type(part).__name__


@pytest.mark.parametrize('saving', ['per_domain', 'encoders'])
def test_memory_saving_gives_the_same_losses(saving):
    """With the detail crop as large as the image the crop draw is fixed, so the
    joint and the per-domain passes see the same views."""
    results = []
    for mode in ('none', saving):
        model = build(segmentor=tiny_hrda(hr_crop=64),
                      plugins=[{**DIDA, 'memory_saving': mode}])
        totals = {}
        for group in model.plugins[0].loss_groups(context(model)):
            sum(v for k, v in group.items() if 'loss' in k).backward()
            for k, v in group.items():
                totals[k] = totals.get(k, 0) + v.detach()
        results.append(totals)
    for k in ('loss_dic_src', 'loss_dic_tgt', 'loss_recon'):
        assert results[1][k].item() == pytest.approx(results[0][k].item(), rel=1e-5), k


def test_dida_leaves_hrda_norm_buffers_bitwise_and_mic_moves_them():
    model = build(segmentor=bn_hrda(), plugins=[DIDA, dict(type='MIC', seed=1,
                                                            mask_block_size=16)])
    dida, mic = model.plugins
    names = set(norm_buffers(model.student))
    for part in ('decode_head.head.', 'decode_head.scale_attention.',
                 'backbone.backbone.', 'backbone.g_prime.'):
        assert any(n.startswith(part) for n in names), part
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    before = {k: v.clone() for k, v in norm_buffers(model.student).items()}
    log = model.plugin_losses(dida, context(model), optim)
    assert log['loss_dic_src'] > 0
    after = norm_buffers(model.student)
    for name, buf in before.items():
        assert torch.equal(after[name], buf), name
    model.plugin_losses(mic, context(model), optim)
    moved = [n for n in before if 'running_' in n
             and not torch.equal(after[n], before[n])]
    assert any(n.startswith('decode_head.head.') for n in moved)
    assert any(n.startswith('backbone.backbone.') for n in moved)
    assert not any(n.startswith('backbone.g_prime.') for n in moved)  # clean pass: g


def test_hrda_dida_mic_step_trains_and_deploys_to_plain_hrda():
    model = build(plugins=[DIDA, dict(type='MIC', seed=1, mask_block_size=16)])
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    before = [p.detach().clone() for p in model.student.parameters()]
    for it in range(2):
        log = model.train_step(make_batch(seed=it), optim)
    for key in ('src.decode.hr.loss_ce', 'mix.decode.loss_ce', 'masked.decode.loss_ce',
                'loss_dic_src', 'loss_dic_tgt', 'loss_recon'):
        assert torch.isfinite(log[key]), key
    assert log['loss'].item() == pytest.approx(sum(
        v.item() for k, v in log.items() if k != 'loss' and ('.loss' in k
                                                            or k.startswith('loss'))),
        rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(before,
                                                      model.student.parameters()))
    # the teacher is a plain HRDA (no g'); so is the deployed network
    assert not any(isinstance(m, DiffusionEncoder) for m in model.teacher_model.modules())
    deployed = deploy_segmentor(model)
    plain = MODELS.build(copy.deepcopy(tiny_hrda()))
    assert set(deployed.state_dict()) == set(plain.state_dict())
    deployed.eval()
    data = model.student.data_preprocessor(make_batch(seed=5)['target'], False)
    with torch.no_grad():
        out = deployed.predict(data['inputs'], data['data_samples'])
    assert out[0].pred_sem_seg.data.shape == (1, 64, 64)


def test_segment_degraded_and_degraded_fd_with_hrda():
    model = build(plugins=[{**DIDA, 'degraded_fd_weight': 0.1,
                            'degraded_fd_reference': 'clean'}])
    plugin = model.plugins[0]
    ctx = context(model)
    t = torch.tensor([10, 60])
    feats, logits = plugin.segment_degraded(model.student, ctx.src_inputs, t)
    assert feats[0].shape[-2:] == (8, 8)  # the 32x32 detail crop at stride 4
    assert logits.shape[-2:] == (16, 16)  # fused, HR output grid of the whole image
    losses = sum_loss_groups(plugin.loss_groups(ctx))
    assert losses['loss_dic_fd'] > 0


def test_ld_scale_weights_replace_hrdas_loss_weights_in_ld_only():
    """ld_scale_weights=HRDA's own weights is the default bitwise; dict(lr=1) makes
    L_D the LR context's weighted CE (HR and fused terms off)."""
    results = {}
    for name, weights in (('default', None), ('same', dict(fused=0.9, hr=0.1)),
                          ('lr', dict(lr=1.0))):
        model = build(plugins=[{**DIDA, 'ld_scale_weights': weights}])
        ctx = context(model)
        torch.manual_seed(11)
        results[name] = sum_loss_groups(model.plugins[0].loss_groups(ctx))
    for k in ('loss_dic_src', 'loss_dic_tgt', 'loss_recon'):
        assert torch.equal(results['same'][k], results['default'][k]), k
    assert not torch.equal(results['lr']['loss_dic_src'],
                           results['default']['loss_dic_src'])
    assert torch.equal(results['lr']['loss_recon'], results['default']['loss_recon'])
    # the LR term by hand: same t and eps (seeded degradation), same crop draw
    model = build(plugins=[{**DIDA, 'ld_scale_weights': dict(lr=1.0)}])
    plugin, ctx = model.plugins[0], context(model)
    torch.manual_seed(11)
    deg = plugin.degradation.degrade_pair(ctx.src_inputs, ctx.tgt_inputs)
    out = plugin.degraded_forward(model.student, deg['x_t'], deg['t'])
    lr_logits = out.logits[1][:2]
    expected = 0.5 * _ce(lr_logits, ctx.src_labels.long())
    assert results['lr']['loss_dic_src'].item() == pytest.approx(expected.item(),
                                                                 rel=1e-4)
    with pytest.raises(ValueError, match='ld_scale_weights must be None or a dict'):
        MODELS.build({**DIDA, 'ld_scale_weights': dict(context=1.0)})
    with pytest.raises(ValueError, match='needs a multi-scale'):
        build(segmentor=tiny_segmentor(),
              plugins=[{**DIDA, 'ld_scale_weights': dict(lr=1.0)}])


def test_degraded_frozen_modules_get_no_gradient_from_dida():
    name = 'decode_head.scale_attention'
    model = build(plugins=[{**DIDA, 'degraded_frozen_modules': [name]}])
    att = model.student.get_submodule(name)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0))
    optim.zero_grad()
    log = model.plugin_losses(model.plugins[0], context(model), optim)
    assert log['loss_dic_src'] > 0
    assert all(p.grad is None or not p.grad.any() for p in att.parameters())
    assert all(p.requires_grad for p in att.parameters())  # restored
    head = model.student.decode_head.head
    assert any(p.grad is not None and p.grad.any() for p in head.parameters())
    # without the option the attention learns from L_D
    plain = build()
    optim = OptimWrapper(torch.optim.SGD(plain.parameters(), lr=0.0))
    optim.zero_grad()
    plain.plugin_losses(plain.plugins[0], context(plain), optim)
    assert any(p.grad is not None and p.grad.any()
               for p in plain.student.get_submodule(name).parameters())
    with pytest.raises(ValueError, match="no module 'decode_head.attention'"):
        build(plugins=[{**DIDA, 'degraded_frozen_modules': ['decode_head.attention']}])
    with pytest.raises(ValueError, match='cannot be combined with memory_saving'):
        MODELS.build({**DIDA, 'degraded_frozen_modules': ['backbone.backbone'],
                      'memory_saving': 'encoders'})


def test_noise_per_view_degrades_each_view_at_its_resolution():
    """Each view gets Eq. 1 with unit-variance eps at its own resolution, the same t;
    L_D and L_R are HRDA's losses of that forward with the detail crop's eps."""
    model = build(plugins=[{**DIDA, 'noise_per_view': True}])
    plugin, ctx = model.plugins[0], context(model)
    torch.manual_seed(11)
    losses = sum_loss_groups(plugin.loss_groups(ctx))
    # by hand with the same draws (degradation seed, global generator for the crop)
    plugin.degradation.set_rng_state(None)
    t = plugin.degradation.sample_pair_t(2)
    views = plugin.degradation.views(t, 2)
    transform = views.for_images(slice(None))
    x0 = torch.cat([ctx.src_inputs, ctx.tgt_inputs])
    seen = {}

    def spy(x, view):
        out = transform(x, view)
        seen[view] = (x, out)
        return out
    torch.manual_seed(11)
    with model.student.backbone.timestep(t):
        out = model.student.uda_forward(x0, spy)
    assert set(seen) == {'lr', 'input'}
    assert seen['lr'][0].shape[-2:] == (32, 32)  # the 0.5 context of 64x64 images
    assert seen['input'][0].shape[-2:] == (32, 32)  # the 32x32 detail crop
    abar = plugin.degradation.abar[t].view(-1, 1, 1, 1)
    for view, (clean, degraded) in seen.items():
        eps = (degraded - abar.sqrt() * clean) / (1 - abar).sqrt()
        assert torch.allclose(eps, transform.noise[view], atol=1e-4), view
        assert abs(eps.var().item() - 1) < 0.15, view  # unit variance in both views
        noise = transform.noise[view]
        assert torch.equal(noise[:2], noise[2:])  # source i and target i share eps
    assert not torch.allclose(transform.noise['lr'], transform.noise['input'])
    fused, _, hr = out.logits
    y1, y2, x1, x2 = out.pixel_box
    labels = torch.cat([ctx.src_labels, ctx.pseudo_label])
    ref_src = 0.9 * _ce(fused[:2], labels[:2]) + 0.1 * _ce(
        hr[:2], labels[:2, y1:y2, x1:x2])
    assert losses['loss_dic_src'].item() == pytest.approx(0.5 * ref_src.item(), rel=1e-5)
    pred = plugin.recon_head(out.pixel_feats, t)
    eps = F.interpolate(transform.noise['input'], size=pred.shape[-2:], mode='area')
    assert losses['loss_recon'].item() == pytest.approx(
        5.0 * F.mse_loss(pred, eps).item(), rel=1e-5)


def test_noise_per_view_memory_modes_agree():
    results = []
    for mode in ('none', 'per_domain'):
        model = build(segmentor=tiny_hrda(hr_crop=64),
                      plugins=[{**DIDA, 'memory_saving': mode, 'noise_per_view': True}])
        totals = {}
        for group in model.plugins[0].loss_groups(context(model)):
            for k, v in group.items():
                totals[k] = totals.get(k, 0) + v.detach()
        results.append(totals)
    for k in ('loss_dic_src', 'loss_dic_tgt', 'loss_recon'):
        assert results[1][k].item() == pytest.approx(results[0][k].item(), rel=1e-5), k


def test_noise_per_view_is_the_papers_degradation_for_a_single_scale_student():
    out = []
    for per_view in (False, True):
        model = build(segmentor=tiny_segmentor(),
                      plugins=[{**DIDA, 'noise_per_view': per_view}])
        out.append(sum_loss_groups(model.plugins[0].loss_groups(context(model))))
    for k in ('loss_dic_src', 'loss_dic_tgt', 'loss_recon'):
        assert torch.equal(out[0][k], out[1][k]), k
    with pytest.raises(ValueError, match="noise_per_view needs degradation kind='noise'"):
        MODELS.build({**DIDA, 'noise_per_view': True,
                      'degradation': dict(type='Degradation', kind='blur')})


def test_time_conditioned_path_is_refused_for_hrda():
    with pytest.raises(NotImplementedError, match='time_conditioned'):
        build(plugins=[{**DIDA, 'seg_path': 'time_conditioned'}])


@pytest.mark.parametrize('factor', [2, 4])
def test_recon_target_with_lowres_noise_is_the_crops_own_noise(factor):
    """noise_downsample > 1 with HRDA: h' reads the detail crop, so L_R's target is
    the eps that was added to the crop's pixels (read back from x_t by Eq. 1), not a
    full-resolution box cut from a low-resolution eps map."""
    model = build(plugins=[{**DIDA, 'degradation': dict(
        type='Degradation', seed=4, noise_downsample=factor)}])
    plugin = model.plugins[0]
    enc = model.student.backbone
    ctx = context(model)
    for seed in (11, 12, 13):  # several crop draws
        plugin.degradation.set_rng_state(None)
        torch.manual_seed(seed)
        loss = sum_loss_groups(plugin.loss_groups(ctx))['loss_recon']
        plugin.degradation.set_rng_state(None)
        deg = plugin.degradation.degrade_pair(ctx.src_inputs, ctx.tgt_inputs)
        torch.manual_seed(seed)
        with enc.timestep(deg['t']):
            out = model.student.uda_forward(deg['x_t'])
        y1, y2, x1, x2 = out.pixel_box
        x0 = torch.cat([ctx.src_inputs, ctx.tgt_inputs])
        a = plugin.degradation.abar[deg['t']].view(-1, 1, 1, 1)
        added = (deg['x_t'] - a.sqrt() * x0) / (1 - a).sqrt()
        assert added.var().item() == pytest.approx(1.0, abs=0.15)
        pred = plugin.recon_head(out.pixel_feats, deg['t'])
        eps = F.interpolate(added[..., y1:y2, x1:x2], size=pred.shape[-2:],
                            mode='area')
        assert loss.item() == pytest.approx(5.0 * F.mse_loss(pred, eps).item(),
                                            rel=1e-4)


@pytest.mark.parametrize('segmentor', ['hrda', 'daformer'])
def test_target_term_of_ld_ignores_pixels_outside_the_valid_mask(segmentor):
    """L_D's target term is weighted by the host's masked q^T (valid_pseudo_mask,
    ignored rows): pseudo labels outside it change nothing, and the term equals
    the one with their weight set to 0 by hand."""
    model = build(segmentor=tiny_hrda() if segmentor == 'hrda' else tiny_segmentor())
    plugin = model.plugins[0]
    ctx = context(model)
    valid = torch.zeros(2, 64, 64)
    valid[:, 8:48, 16:] = 1  # e.g. crop_pseudo_margins and ignored bottom rows
    ctx.pseudo_weight_masked = ctx.pseudo_weight * valid

    def target_term(labels):
        ctx.pseudo_label = labels
        plugin.degradation.set_rng_state(None)
        torch.manual_seed(11)
        return sum_loss_groups(plugin.loss_groups(ctx))['loss_dic_tgt']

    labels = ctx.pseudo_label.clone()
    masked = target_term(labels)
    other = torch.where(valid.bool(), labels, (labels + 1) % 4)
    assert target_term(other).item() == pytest.approx(masked.item(), rel=1e-6)
    # the same as a host that hands the masked weight as the only one
    ctx.pseudo_weight, ctx.pseudo_weight_masked = ctx.pseudo_weight_masked, None
    assert target_term(labels).item() == pytest.approx(masked.item(), rel=1e-6)

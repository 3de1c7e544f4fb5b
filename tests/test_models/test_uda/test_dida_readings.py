"""DiDA's open readings of the paper, each a switch whose off state is today's maths:
g conditioned on t inside its Mix-FFN blocks (``g_block_time``), BatchNorm statistics
per domain in the degraded pass (``degraded_norm``), h''s first gradients
(``recon_init``, ``recon_target``)."""
import copy

import pytest
import torch
from mmengine.optim import OptimWrapper
from torch import nn

import mmseg_dida  # noqa: F401
from mmseg_dida.deploy import deploy_segmentor
from mmseg_dida.models.backbones import DiffusionEncoder
from mmseg_dida.models.backbones.diffusion_encoder import mix_ffn_depthwise_convs
from mmseg_dida.models.decode_heads.recon_head import ReconHead
from mmseg_dida.models.utils.norm_buffers import norm_buffers, per_part_batch_norm
from mmseg_dida.models.utils.time_embedding import TimeEmbedding
from tests.helpers.uda import build_dacs, make_batch, tiny_segmentor, toy_context
from tests.test_models.test_uda.test_dida import _grads_by_groups as grads_by_groups
from tests.test_models.test_uda.test_dida_norm_buffers import bn_segmentor


def _mit():
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(tiny_segmentor()['backbone'])


def _set_block_films(encoder, scale_plus_one: float):
    """Every block FiLM to the constant modulation z * scale_plus_one + 0."""
    with torch.no_grad():
        for film in encoder.block_film:
            linear = film.mlp[-1]
            linear.weight.zero_()
            linear.bias.zero_()
            linear.bias[:film.channels] = scale_plus_one - 1.0


# ------------------------------------------------------------------ g_block_time
@pytest.mark.parametrize('block_time', [False, True])
def test_the_time_mlp_is_drawn_before_the_films(block_time):
    """A seeded DiffusionEncoder draws its time MLP first, then the compensation
    FiLMs (the order before the readings' options; a seeded run initialises the
    same weights and a checkpoint's optimiser state maps onto the same tensors)."""
    g = _mit()
    torch.manual_seed(7)
    enc = DiffusionEncoder(copy.deepcopy(g), block_time=block_time)
    torch.manual_seed(7)
    ref = TimeEmbedding(16, 256)
    for a, b in zip(enc.time_embed.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    names = [n for n, _ in enc.named_parameters()]
    assert names.index('time_embed.mlp.0.weight') < names.index('film.0.mlp.1.weight')


def test_block_time_off_is_todays_encoder():
    g = _mit()
    enc = DiffusionEncoder(copy.deepcopy(g))
    assert not enc.block_time and not hasattr(enc, 'block_film')
    assert all(not c._forward_hooks for c in mix_ffn_depthwise_convs(enc.backbone))
    x, t = torch.randn(2, 3, 64, 64), torch.tensor([10, 80])
    with torch.no_grad(), enc.timestep(t):
        fused = enc(x)
        ref_g, ref_gp = enc.backbone(x), enc.g_prime(x)
        emb = enc.time_embed(t)
    for f, z, zp, film in zip(fused, ref_g, ref_gp, enc.film):
        assert torch.equal(f, z + film(zp, emb))


@pytest.mark.parametrize('mode', ['full', 'none'])
def test_block_time_modulates_g_inside_its_blocks_in_degraded_passes_only(mode):
    g = _mit()
    enc = DiffusionEncoder(copy.deepcopy(g), mode=mode, block_time=True)
    convs = mix_ffn_depthwise_convs(enc.backbone)
    assert len(convs) == 4 == len(enc.block_film)  # one Mix-FFN per stage here
    seen = []  # hooks exist during a degraded call of g only
    probe = convs[0].register_forward_pre_hook(
        lambda m, args: seen.append(len(m._forward_hooks)))
    x, t = torch.randn(2, 3, 64, 64), torch.tensor([10, 80])
    with torch.no_grad():
        # at the start the FiLMs are the identity: the degraded g is g
        feats, _ = enc.degraded_levels(x, t)
        for a, b in zip(feats, g(x)):
            assert torch.equal(a, b)
        probe.remove()
        assert seen == [1] and all(not c._forward_hooks for c in convs)
        if mode == 'full':  # g' is not modulated inside
            assert all(not c._forward_hooks
                       for c in mix_ffn_depthwise_convs(enc.g_prime))
        # without t: exactly g, whatever the FiLMs hold
        _set_block_films(enc, 3.0)
        for a, b in zip(enc(x), g(x)):
            assert torch.equal(a, b)
        # FiLMs that zero the depthwise outputs: g with those outputs zeroed
        _set_block_films(enc, 0.0)
        feats, _ = enc.degraded_levels(x, t)
        zeroed = copy.deepcopy(g)
        for conv in mix_ffn_depthwise_convs(zeroed):
            conv.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
        for a, b in zip(feats, zeroed(x)):
            torch.testing.assert_close(a, b)
        for a, b in zip(enc(x), g(x)):  # and the clean pass is still g
            assert torch.equal(a, b)


def test_block_time_trains_deploys_and_checkpoints_alike():
    plugin = dict(type='DiDA', recon_channels=8, g_block_time=True)
    model = build_dacs(plugins=[plugin], imnet_feature_dist_lambda=0.0,
                       pseudo_weight_ignore_top=0, pseudo_weight_ignore_bottom=0)
    enc = model.student.backbone
    assert enc.block_time and hasattr(enc, 'g_prime')
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    before = [p.clone() for p in enc.block_film.parameters()]
    model.train_step(make_batch(), optim)
    assert any(not torch.equal(a, b) for a, b in zip(before, enc.block_film.parameters()))
    # the teacher's and the deployed g are plain g: no hook, no wrapper behind one
    deployed = deploy_segmentor(model)
    for g in (model.teacher_model.backbone, deployed.backbone):
        assert all(not m._forward_hooks and not m._forward_pre_hooks
                   for m in g.modules())
    assert not any('block_film' in k for k in deployed.state_dict())
    # activation checkpointing of g recomputes the same modulated pass
    grads = []
    for saving in ('per_domain', 'encoders'):
        m = build_dacs(plugins=[dict(plugin, memory_saving=saving)],
                       imnet_feature_dist_lambda=0.0, pseudo_weight_ignore_top=0,
                       pseudo_weight_ignore_bottom=0)
        m.zero_grad()
        for group in m.plugins[0].loss_groups(toy_context(m)):
            sum(v for k, v in group.items() if 'loss' in k).backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()
                      if p.grad is not None and 'block_film' in n})
    assert grads[0] and set(grads[0]) == set(grads[1])
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ degraded_norm
def test_per_part_batch_norm_equals_separate_passes():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)).train()
    a, b = torch.randn(2, 3, 5, 5) + 2.0, torch.randn(3, 3, 5, 5) - 1.0
    ref = copy.deepcopy(net)
    expected = torch.cat([ref(a), ref(b)])
    with per_part_batch_norm(net, (2, 3)):
        out = net(torch.cat([a, b]))
        with pytest.raises(ValueError, match='a batch of 4'):
            net(torch.cat([a, a]))
    torch.testing.assert_close(out, expected)
    for k, v in norm_buffers(ref).items():  # running statistics moved as two passes
        torch.testing.assert_close(norm_buffers(net)[k], v)
    joint = copy.deepcopy(ref)
    assert not torch.allclose(joint(torch.cat([a, b])), out)
    assert 'forward' not in vars(net[1])  # the scope left the layers as they were
    # several modules at once; a forward set on a layer before is put back
    other = nn.Sequential(nn.BatchNorm2d(3)).train()
    own = other[0].forward
    other[0].forward = own
    with per_part_batch_norm([net, other], (2, 3)):
        assert 'forward' in vars(net[1]) and other[0].forward is not own
        with pytest.raises(ValueError, match='a batch of 4'):
            other(torch.cat([a, a]))
    assert other[0].forward is own and 'forward' not in vars(net[1])


def _bn_dida(**dida):
    return build_dacs(bn_segmentor(), [dict(type='DiDA', recon_channels=8, **dida)],
                      imnet_feature_dist_lambda=0.0, pseudo_weight_ignore_top=0,
                      pseudo_weight_ignore_bottom=0)


def _group_grads(model):
    ctx = toy_context(model)
    model.zero_grad()
    torch.manual_seed(3)
    return grads_by_groups(model, ctx)


@pytest.mark.parametrize('saving', ['per_domain', 'g_prime', 'encoders'])
def test_per_domain_statistics_make_every_memory_mode_equal(saving):
    """With BatchNorm in g, g' and h: one batched pass with per-domain statistics
    gives the losses and gradients of the modes that run the domains apart."""
    (la, ga), (lb, gb) = (_group_grads(_bn_dida(memory_saving=m,
                                                degraded_norm='per_domain'))
                          for m in ('none', saving))
    for k in ('loss_dic_src', 'loss_dic_tgt', 'loss_recon'):
        assert lb[k].item() == pytest.approx(la[k].item(), rel=1e-5), k
    assert set(ga) == set(gb)
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-4, atol=1e-6)
    # the joint statistics of today's default differ from them
    lj, _ = _group_grads(_bn_dida(memory_saving='none'))
    assert lj['loss_dic_src'].item() != pytest.approx(la['loss_dic_src'].item(),
                                                     rel=1e-4)


def test_per_domain_statistics_cover_the_time_conditioned_path():
    """seg_path='time_conditioned' has a BatchNorm of its own (a copy of the
    head's fusion): per-domain statistics reach it too, so the modes agree."""
    (la, ga), (lb, gb) = (_group_grads(_bn_dida(
        memory_saving=m, degraded_norm='per_domain', seg_path='time_conditioned'))
        for m in ('none', 'per_domain'))
    assert any(isinstance(m, nn.BatchNorm2d)
               for m in _bn_dida(seg_path='time_conditioned').plugins[0]
               .seg_path_module.modules())
    for k in ('loss_dic_src', 'loss_dic_tgt', 'loss_recon'):
        assert lb[k].item() == pytest.approx(la[k].item(), rel=1e-5), k
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-4, atol=1e-6)


def test_an_option_without_its_subject_is_an_error():
    with pytest.raises(ValueError, match="ld_t_weight_on='target' chooses"):
        build_dacs(plugins=[dict(type='DiDA', recon_channels=8,
                                 ld_t_weight_on='target')])
    with pytest.raises(ValueError, match="recon_init='zero' initialises h'"):
        build_dacs(plugins=[dict(type='DiDA', recon_channels=8, recon=None,
                                 recon_init='zero')])


def test_joint_statistics_with_split_passes_is_one_error():
    for saving in ('per_domain', 'auto'):
        with pytest.raises(ValueError, match=r"degraded_norm='per_domain'"):
            _bn_dida(memory_saving=saving)
    # a student without BatchNorm has nothing to normalise jointly
    build_dacs(plugins=[dict(type='DiDA', recon_channels=8, memory_saving='auto')])


# --------------------------------------------------------- recon_init, recon_target
def test_zero_initialised_h_prime_sends_no_first_gradient_into_the_encoders():
    model = build_dacs(plugins=[dict(type='DiDA', recon_channels=8, recon_init='zero',
                                     lambda_d=0.0)],
                       imnet_feature_dist_lambda=0.0, pseudo_weight_ignore_top=0,
                       pseudo_weight_ignore_bottom=0)
    head = model.plugins[0].recon_head
    assert head.pred.weight.abs().sum() == 0 and head.pred.bias.abs().sum() == 0
    model.zero_grad()
    for group in model.plugins[0].loss_groups(toy_context(model)):
        group['loss_recon'].backward()
    enc = model.student.backbone
    for p in list(enc.backbone.parameters()) + list(enc.g_prime.parameters()):
        assert p.grad is None or p.grad.abs().max() == 0
    assert head.pred.weight.grad.abs().sum() > 0  # h' itself learns at once
    default = build_dacs(plugins=[dict(type='DiDA', recon_channels=8)])
    assert default.plugins[0].recon_head.pred.weight.abs().sum() > 0


def test_unit_variance_target_rescales_pooled_noise():
    eps = torch.randn(4, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    pred = torch.zeros(4, 3, 64, 64)
    plain = ReconHead(in_channels=[8], in_index=[0], loss_weight=1.0)
    unit = ReconHead(in_channels=[8], in_index=[0], loss_weight=1.0,
                     target_scale='unit_variance')
    pooled = plain.match_target(pred, eps)
    assert pooled.std().item() == pytest.approx(0.25, rel=0.02)
    torch.testing.assert_close(unit.match_target(pred, eps), 4.0 * pooled)
    assert unit.match_target(pred, eps).std().item() == pytest.approx(1.0, rel=0.02)
    with pytest.raises(ValueError, match='integer factors'):
        unit.match_target(torch.zeros(1, 3, 60, 64), eps)
    with pytest.raises(ValueError, match='noise_downsample=1'):
        build_dacs(plugins=[dict(type='DiDA', recon_target='unit_variance',
                                 degradation=dict(type='Degradation',
                                                  noise_downsample=4))])


# ------------------------------------------------------------------ ld_t_weight_on
def test_t_weight_of_the_target_term_only():
    t = torch.tensor([10, 80, 10, 80])  # [source; target] pairs sharing t
    both = build_dacs(plugins=[dict(type='DiDA', recon_channels=8, ld_t_weight='abar')])
    only = build_dacs(plugins=[dict(type='DiDA', recon_channels=8, ld_t_weight='abar',
                                    ld_t_weight_on='target')])
    abar = both.plugins[0].degradation.abar[t].float()
    torch.testing.assert_close(both.plugins[0].ld_image_weight(t, 2), abar)
    torch.testing.assert_close(only.plugins[0].ld_image_weight(t, 2),
                               torch.cat([torch.ones(2), abar[2:]]))
    # the per-domain memory modes hand out a target chunk alone: weighted as target
    torch.testing.assert_close(only.plugins[0].ld_image_weight(t[2:], 0), abar[2:])
    off = build_dacs(plugins=[dict(type='DiDA', recon_channels=8)])
    assert off.plugins[0].ld_image_weight(t, 2) is None  # nothing to apply: the paper

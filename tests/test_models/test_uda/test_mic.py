"""MIC: the block mask's ratio and block size, its loss against a hand-derived
reference, and that the plug-in adds exactly its loss to the DACS step."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.models.uda import MIC, block_mask
from mmseg_dida.models.utils import norm_buffers
from mmseg_dida.models.utils.strong_transforms import StrongAugmentation
from tests.helpers.uda import build_dacs, make_batch, tiny_hrda, tiny_segmentor, toy_context


# ------------------------------------------------------------------ the mask
def test_block_mask_blocks_are_constant_and_binary():
    mask = block_mask((3, 64, 96), 0.5, 16, torch.Generator().manual_seed(0))
    assert mask.shape == (3, 1, 64, 96)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    cells = mask.view(3, 1, 4, 16, 6, 16)
    assert torch.equal(cells.amax(dim=(3, 5)), cells.amin(dim=(3, 5)))
    # not divisible: round(70 / 32) = 2 rows of cells, nearest-upsampled
    odd = block_mask((1, 70, 64), 0.5, 32, torch.Generator().manual_seed(1))
    rows = odd[0, 0, :, 0]
    assert len(torch.unique_consecutive(rows)) <= 2


def test_block_mask_drops_the_given_fraction_of_blocks():
    g = torch.Generator().manual_seed(0)
    mask = block_mask((200, 64, 64), 0.7, 8, g)  # 200 x 64 cells
    assert mask.mean().item() == pytest.approx(0.3, abs=0.015)
    assert torch.equal(block_mask((2, 32, 32), 0.0, 8, g), torch.ones(2, 1, 32, 32))
    with pytest.raises(ValueError, match='ratio'):
        block_mask((1, 8, 8), 1.0, 4)
    with pytest.raises(ValueError, match='block_size'):
        block_mask((1, 8, 8), 0.5, 0)


# ------------------------------------------------------------------ the loss
def build(segmentor=None, plugins=(dict(type='MIC', mask_block_size=16, seed=3), ),
          **kwargs):
    """DACS around ``segmentor`` (the tiny MiT) with ``plugins`` (MIC); ``kwargs``
    override these tests' DACS arguments."""
    args = dict(imnet_feature_dist_lambda=0.0, pseudo_weight_ignore_top=4,
                pseudo_weight_ignore_bottom=8, pseudo_threshold=0.26)
    args.update(kwargs)
    return build_dacs(segmentor, plugins, **args)


def context(model, seed=0):
    """The toy context with the host's 4 ignored top rows in the masked weight."""
    return toy_context(model, seed, ignore_top=4)


def test_mic_loss_is_weighted_ce_on_the_augmented_masked_target():
    model = build(plugins=[dict(type='MIC', mask_block_size=16, seed=3,
                                loss_weight=0.5)])
    ctx = context(model)
    losses = model.plugins[0].losses(ctx)
    assert set(losses) == {'masked.decode.loss_ce', 'masked.decode.acc_seg'}
    # the reference: the same draws (jitter/blur, then the mask) from seed 3
    g = torch.Generator().manual_seed(3)
    pre = model.student.data_preprocessor
    img = StrongAugmentation()(ctx.tgt_inputs, pre.mean, pre.std, generator=g)
    img = img * block_mask((2, 64, 64), 0.7, 16, g)
    assert (img == 0).float().mean() > 0.5  # most blocks masked
    logits = model.student.decode_head(model.student.extract_feat(img))
    logits = F.interpolate(logits, size=(64, 64), mode='bilinear', align_corners=False)
    ce = F.cross_entropy(logits, ctx.pseudo_label, reduction='none')
    ref = 0.5 * (ce * ctx.pseudo_weight_masked).mean()
    assert losses['masked.decode.loss_ce'].item() == pytest.approx(ref.item(), rel=1e-5)


def test_mic_pictures_only_when_a_hook_asks():
    """The mask and the masked image go to the step's pictures (UDAVisualizationHook)
    when asked, and nothing is kept otherwise; the loss is the same either way."""
    model = build()
    plugin = model.plugins[0]
    ctx = context(model)
    plugin.generator()
    g0 = plugin.rng_state()  # what a checkpoint keeps (resume_state)
    quiet = plugin.losses(ctx)['masked.decode.loss_ce']
    plugin.set_rng_state(g0)
    ctx.vis_images = {}
    asked = plugin.losses(ctx)['masked.decode.loss_ce']
    assert torch.equal(quiet, asked)
    mask, img = ctx.vis_images['mic_mask'], ctx.vis_images['mic_img']
    assert mask.shape == (2, 64, 64) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.all(img[mask[:, None].expand_as(img) == 0] == 0)
    assert not mask.requires_grad and not img.requires_grad


def test_source_and_target_images_and_source_only_host():
    plugin = MIC(images='source_and_target', color_augmentation=False)
    model = build(plugins=[])
    ctx = context(model)
    imgs, labels, weight = plugin.masked_batch(ctx)
    assert torch.equal(imgs, torch.cat([ctx.src_inputs[:1], ctx.tgt_inputs[:1]]))
    assert torch.equal(labels[0], ctx.src_labels[0])
    assert torch.equal(labels[1], ctx.pseudo_label[0])
    assert torch.equal(weight[0], torch.ones(64, 64))
    assert torch.equal(weight[1], ctx.pseudo_weight_masked[0])
    ctx.pseudo_label = ctx.pseudo_weight = ctx.pseudo_weight_masked = None
    imgs, labels, weight = MIC().masked_batch(ctx)
    assert imgs is ctx.src_inputs and weight is None


def _grads(model):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for p in model.student.parameters()]


def test_mic_adds_exactly_its_loss_to_the_step():
    with_mic = build()
    without = copy.deepcopy(with_mic)
    without.plugins = torch.nn.ModuleList()
    initial = copy.deepcopy(with_mic)
    seen = []
    plugin = with_mic.plugins[0]
    plugin_losses = plugin.losses
    plugin.losses = lambda ctx: seen.append(ctx) or plugin_losses(ctx)
    logs = []
    for model in (with_mic, without):
        optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
        torch.manual_seed(5)
        logs.append(model.forward_backward(make_batch(seed=1), optim))
    mic, base = logs
    assert base['pseudo_weight'] > 0
    mic_keys = {k for k in mic if k.startswith('masked.')}
    assert mic_keys == {'masked.decode.loss_ce', 'masked.decode.acc_seg'}
    for key in base:
        if key != 'loss':
            assert torch.equal(mic[key], base[key]), key
    assert mic['loss'].item() == pytest.approx(
        base['loss'].item() + mic['masked.decode.loss_ce'].item(), rel=1e-6)
    # gradients: the step's with MIC = without + the gradient of MIC's loss alone,
    # computed on the step's context (its pseudo labels and masked weights)
    ctx = seen[0]
    assert torch.equal(ctx.pseudo_weight_masked[:, :4], torch.zeros(2, 4, 64))
    ctx.student = initial.student
    initial.plugins[0].losses(ctx)['masked.decode.loss_ce'].backward()
    for g_mic, g_base, g_ref in zip(_grads(with_mic), _grads(without), _grads(initial)):
        torch.testing.assert_close(g_mic, g_base + g_ref, rtol=1e-5, atol=1e-7)


def test_mic_with_hrda_uses_its_multi_resolution_losses():
    model = build(segmentor=tiny_hrda())
    log = model.train_step(make_batch(), OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.01)))
    for key in ('masked.decode.loss_ce', 'masked.decode.hr.loss_ce', 'mix.decode.loss_ce',
                'mix.decode.hr.loss_ce', 'src.decode.hr.loss_ce'):
        assert torch.isfinite(log[key]), key


def test_masked_pass_updates_batchnorm_statistics_as_mics_does():
    seg = tiny_segmentor()
    seg['decode_head']['norm_cfg'] = dict(type='BN', requires_grad=True)
    model = build(segmentor=seg)
    assert not model.plugins[0].preserves_norm_buffers
    before = {k: v.clone() for k, v in norm_buffers(model.student).items()}
    assert before
    model.plugin_losses(model.plugins[0], context(model), OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.0)))
    after = norm_buffers(model.student)
    assert all(not torch.equal(after[k], before[k]) for k in before
               if 'running_' in k)


def test_masked_pass_with_preserved_statistics_leaves_them_and_trains_the_same():
    seg = tiny_segmentor()
    seg['decode_head']['norm_cfg'] = dict(type='BN', requires_grad=True)
    mic = dict(type='MIC', mask_block_size=16, seed=3)
    moving = build(segmentor=copy.deepcopy(seg), plugins=[mic])
    kept = build(segmentor=copy.deepcopy(seg), plugins=[{**mic,
                                                         'update_norm_stats': False}])
    assert kept.plugins[0].preserves_norm_buffers
    before = {k: v.clone() for k, v in norm_buffers(kept.student).items()}
    logs = [m.plugin_losses(m.plugins[0], context(m), OptimWrapper(
        torch.optim.SGD(m.parameters(), lr=0.0))) for m in (moving, kept)]
    after = norm_buffers(kept.student)
    assert all(torch.equal(after[k], before[k]) for k in before)
    # Batch statistics in the pass itself either way: the loss is the same.
    assert logs[0]['masked.decode.loss_ce'] == logs[1]['masked.decode.loss_ce']
    with pytest.raises(ValueError, match='update_norm_stats must be True or False'):
        MODELS.build(dict(type='MIC', update_norm_stats='no'))


@pytest.mark.parametrize('bad, message', [
    (dict(mask_ratio=1.0), 'mask_ratio must be in'),
    (dict(mask_block_size=0), 'mask_block_size must be an int'),
    (dict(loss_weight=0), 'loss_weight'),
    (dict(images='mixed'), 'images must be one of'),
])
def test_bad_options_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        MODELS.build(dict(type='MIC', **bad))

"""The DACS/DAFormer self-training step, checked numerically on a toy MiT."""
import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from torch import nn

import mmseg_dida  # noqa: F401
from mmseg_dida.models.losses.loss_keys import is_loss_key
from mmseg_dida.models.uda import BaseUDAPlugin
from mmseg_dida.models.uda.dacs import batch_confidence_weight
from tests.helpers.uda import build_dacs, make_batch, tiny_segmentor


@MODELS.register_module(force=True)
class _RecordingPlugin(BaseUDAPlugin):
    """Records what the step gives plug-ins; adds a small feature-norm loss."""

    def __init__(self, weight=0.1):
        super().__init__()
        self.weight = weight
        self.events = []
        self.ctx = None

    def attach(self, uda_model):
        self.events.append(('attach', hasattr(uda_model, 'student'),
                            hasattr(uda_model, 'teacher')))

    def losses(self, ctx):
        self.ctx = ctx
        feat = ctx.student.extract_feat(ctx.tgt_inputs)[-1]
        return {'loss_toy': self.weight * feat.pow(2).mean()}


@MODELS.register_module(force=True)
class _TwoGroupsPlugin(BaseUDAPlugin):
    """Two loss groups on parameters of its own: a loss key that neither starts with
    'loss' nor follows a '.', a logged statistic with gradients, and what had been
    back-propagated when each group was computed."""

    def __init__(self, bad_value=False):
        super().__init__()
        self.q = nn.Parameter(torch.tensor(2.0))
        self.p = nn.Parameter(torch.tensor(3.0))
        self.bad_value = bad_value
        self.seen = []

    def loss_groups(self, ctx):
        head = ctx.student.decode_head.conv_seg.weight
        self.seen.append((head.grad is not None, self.q.grad))
        yield {'aux_loss_q': self.q ** 2, 'stat_p': 5 * self.p}
        self.seen.append((head.grad is not None, self.q.grad.clone()))
        yield {'aux_loss_q': 3 * self.q,
               'stat_p': 1.0 if self.bad_value else self.p.detach()}


def build(**kwargs):
    """DACS around the tiny MiT with its construction-time weights; ``kwargs``
    override these tests' DACS arguments."""
    args = dict(imnet_feature_dist_classes=[1, 2], pseudo_weight_ignore_top=0,
                pseudo_weight_ignore_bottom=0)
    args.update(kwargs)
    return build_dacs(init_weights=False, **args)


def sgd(model, lr=0.0):
    return build_optim_wrapper(model, dict(type='OptimWrapper',
                                           optimizer=dict(type='SGD', lr=lr)))


def test_batch_confidence_weight_known_value():
    p = torch.tensor([[0.99, 0.5], [0.968, 0.2]])
    assert batch_confidence_weight(p, 0.968).item() == pytest.approx(0.5)
    assert batch_confidence_weight(p, 0.999).item() == 0.0


def test_mask_pseudo_weight_rows_and_valid_mask():
    model = build(pseudo_weight_ignore_top=2, pseudo_weight_ignore_bottom=3)
    w = torch.full((2, 10, 6), 0.7)
    samples = make_batch(n=2, size=10)['target']['data_samples']
    valid = torch.ones(1, 10, 6, dtype=torch.uint8)
    valid[..., :1] = 0
    samples[1].valid_pseudo_mask = PixelData(data=valid)
    out = model.mask_pseudo_weight(w, samples)
    assert torch.all(out[:, :2] == 0) and torch.all(out[:, -3:] == 0)
    assert torch.allclose(out[0, 2:7], torch.tensor(0.7))
    assert torch.all(out[1, 2:7, 0] == 0) and torch.allclose(out[1, 2:7, 1:],
                                                             torch.tensor(0.7))
    assert torch.allclose(w, torch.tensor(0.7))  # input untouched
    # A mask smaller than the (padded) batch: the padded pixels are not valid.
    samples[0].valid_pseudo_mask = PixelData(data=torch.ones(1, 8, 5, dtype=torch.uint8))
    out = model.mask_pseudo_weight(torch.ones(2, 10, 6), samples)
    assert out[0, 2:7, :5].min() == 1 and out[0, :, 5].max() == 0


def test_step_losses_plugin_context_and_attach_order():
    model = build(plugins=[dict(type='_RecordingPlugin')],
                  pseudo_weight_ignore_top=8, pseudo_weight_ignore_bottom=16,
                  pseudo_threshold=0.3)
    plugin = model.plugins[0]
    # attach ran after the student was built and before the teacher copy existed.
    assert plugin.events == [('attach', True, False)]
    log = model.train_step(make_batch(), sgd(model, 0.01))
    for key in ('src.decode.loss_ce', 'src.loss_imnet_feat_dist', 'mix.decode.loss_ce',
                'loss_toy', 'pseudo_weight', 'loss'):
        assert key in log and torch.isfinite(torch.as_tensor(log[key]))
    total = sum(log[k] for k in ('src.decode.loss_ce', 'src.loss_imnet_feat_dist',
                                 'mix.decode.loss_ce', 'loss_toy'))
    assert log['loss'].item() == pytest.approx(total.item(), rel=1e-6)
    ctx = plugin.ctx
    q = log['pseudo_weight'].item()
    assert 0.0 < q <= 1.0
    # Plain q^T for plug-ins; the cropped one as pseudo_weight_masked.
    assert ctx.pseudo_weight.shape == (2, 64, 64)
    assert torch.allclose(ctx.pseudo_weight, torch.tensor(q))
    masked = ctx.pseudo_weight_masked
    assert torch.all(masked[:, :8] == 0) and torch.all(masked[:, -16:] == 0)
    assert torch.allclose(masked[:, 8:-16], torch.tensor(q))
    assert ctx.pseudo_label.shape == (2, 64, 64) and ctx.pseudo_label.dtype == torch.long
    assert ctx.iteration == 0 and int(model.local_iter) == 1
    assert ctx.teacher is model.teacher.model


def test_step_is_the_ordered_loss_groups_with_one_loss_rule():
    """source, mixed, then the plug-in's groups, each back-propagated before the next
    is computed; a key is back-propagated and counted in the total iff is_loss_key."""
    model = build(plugins=[dict(type='_TwoGroupsPlugin')], pseudo_threshold=0.26)
    names, groups = [], model.loss_groups

    def named_groups(ctx):
        for name, losses in groups(ctx):
            names.append(name)
            yield name, losses

    model.loss_groups = named_groups
    log = model.forward_backward(make_batch(), sgd(model))
    plugin = model.plugins[0]
    assert names == ['source', 'mixed', '_TwoGroupsPlugin', '_TwoGroupsPlugin']
    # L_S and L_T were back-propagated before the plug-in's first group; its first
    # group (d q^2 / dq = 4) before its second
    assert plugin.seen[0] == (True, None)
    assert plugin.seen[1][0] and plugin.seen[1][1].item() == 4.0
    assert plugin.q.grad.item() == 4.0 + 3.0
    assert plugin.p.grad is None  # 'stat_p' has gradients but is not a loss key
    # the log: a key of several groups summed; the total is every loss key of the log
    assert log['aux_loss_q'].item() == 4.0 + 6.0
    assert log['stat_p'].item() == 15.0 + 3.0
    total = sum(v for k, v in log.items() if k != 'loss' and is_loss_key(k))
    assert torch.equal(log['loss'], total)
    assert list(log) == ['src.decode.loss_ce', 'src.decode.acc_seg',
                         'src.loss_imnet_feat_dist', 'pseudo_weight',
                         'mix.decode.loss_ce', 'mix.decode.acc_seg', 'aux_loss_q',
                         'stat_p', 'loss']
    assert all(not v.requires_grad for v in log.values())


def test_non_tensor_loss_value_names_its_group():
    model = build(plugins=[dict(type='_TwoGroupsPlugin', bad_value=True)])
    with pytest.raises(TypeError, match="the _TwoGroupsPlugin loss group returned "
                                        "stat_p=float; losses must be tensors"):
        model.train_step(make_batch(), sgd(model))


def test_teacher_follows_ema_of_student():
    model = build(imnet_feature_dist_lambda=0.0)
    ow = sgd(model, 0.05)
    theta0 = [p.detach().clone() for p in model.student.parameters()]
    model.train_step(make_batch(seed=0), ow)           # it 0: teacher := student
    for t, s0 in zip(model.teacher.model.parameters(), theta0):
        assert torch.equal(t, s0)
    theta1 = [p.detach().clone() for p in model.student.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(theta0, theta1))
    model.train_step(make_batch(seed=1), ow)           # it 1: alpha = 0.5
    for t, s0, s1 in zip(model.teacher.model.parameters(), theta0, theta1):
        assert torch.allclose(t, 0.5 * s0 + 0.5 * s1, atol=1e-7)
        assert not t.requires_grad


def test_mixed_loss_is_confidence_weighted_ce():
    """L_T against a reference derived by hand: all-target and all-source masks."""
    model = build(imnet_feature_dist_lambda=0.0, color_jitter_probability=1.0,
                  blur=False)
    ctx = model.step_context(make_batch())
    pl = torch.randint(0, 4, (2, 64, 64), generator=torch.Generator().manual_seed(0))
    w = torch.rand(2, 64, 64, generator=torch.Generator().manual_seed(1))
    ctx = dataclasses.replace(ctx, pseudo_label=pl, pseudo_weight_masked=w)

    def ref(img, label, weight):
        logits = model.student.decode_head(model.student.extract_feat(img))
        logits = F.interpolate(logits, size=(64, 64), mode='bilinear',
                               align_corners=False)
        ce = F.cross_entropy(logits, label, reduction='none', ignore_index=255)
        return (ce * weight).mean()

    model.class_masks = lambda lbl: torch.zeros_like(lbl, dtype=torch.float)
    loss = model.mixed_losses(ctx)
    assert loss['mix.decode.loss_ce'].item() == pytest.approx(
        ref(ctx.tgt_inputs, pl, w).item(), rel=1e-5)
    model.class_masks = lambda lbl: torch.ones_like(lbl, dtype=torch.float)
    loss = model.mixed_losses(ctx)
    src_gt = torch.stack([s.gt_sem_seg.data[0] for s in ctx.src_data_samples])
    assert torch.equal(ctx.src_labels, src_gt)
    assert loss['mix.decode.loss_ce'].item() == pytest.approx(
        ref(ctx.src_inputs, src_gt, torch.ones_like(w)).item(), rel=1e-5)


def test_source_only_step_is_plain_sgd_on_source_ce():
    model = build(source_only=True, imnet_feature_dist_lambda=0.0)
    assert model.teacher is None
    ref = copy.deepcopy(model.student)
    batch = make_batch()
    log = model.train_step(batch, sgd(model, 0.1))
    assert set(log) == {'src.decode.loss_ce', 'src.decode.acc_seg', 'loss'}
    # The same update by hand: theta - lr * grad L_S.
    data = ref.data_preprocessor(batch['source'], True)
    loss = ref.loss(data['inputs'], data['data_samples'])['decode.loss_ce']
    loss.backward()
    for p, q in zip(model.student.parameters(), ref.parameters()):
        expected = q.detach() - 0.1 * (q.grad if q.grad is not None else 0)
        assert torch.allclose(p, expected, atol=1e-6)


def test_feature_distance_against_frozen_initial_model():
    model = build(imnet_feature_dist_lambda=1.0, imnet_feature_dist_classes=None)
    model.init_weights()
    # The ImageNet model starts equal to the student, so L_FD = 0 at first ...
    batch = make_batch()
    losses = model.source_losses(model.step_context(batch))
    # (eval-mode attention takes another kernel: equal up to float rounding)
    assert losses['src.loss_imnet_feat_dist'].item() == pytest.approx(0.0, abs=1e-4)
    assert not any(p.requires_grad for p in model.imnet_model.parameters())
    # ... and stays frozen while the student moves.
    before = [p.clone() for p in model.imnet_model.parameters()]
    model.train_step(batch, sgd(model, 0.1))
    assert all(torch.equal(a, b) for a, b in zip(before, model.imnet_model.parameters()))
    losses = model.source_losses(model.step_context(batch))
    assert losses['src.loss_imnet_feat_dist'].item() > 1e-3


def test_unweighted_head_is_rejected():
    with pytest.raises(ValueError, match='seg_weight'):
        MODELS.build(dict(type='DACS', segmentor=tiny_segmentor(head='SegformerHead')))
    MODELS.build(dict(type='DACS', source_only=True, imnet_feature_dist_lambda=0.0,
                      segmentor=tiny_segmentor(head='SegformerHead')))


def test_state_survives_resume_and_inference_uses_student():
    model = build()
    ow = sgd(model, 0.05)
    model.train_step(make_batch(seed=0), ow)
    model.train_step(make_batch(seed=1), ow)
    state = model.state_dict()
    assert int(state['local_iter']) == 2
    assert any(k.startswith('teacher.model.backbone') for k in state)
    assert any(k.startswith('imnet_model.backbone') for k in state)
    fresh = build()
    fresh.load_state_dict(state)
    assert int(fresh.local_iter) == 2
    for a, b in zip(fresh.teacher.parameters(), model.teacher.parameters()):
        assert torch.equal(a, b)
    # Validation/test go to the student.
    batch = make_batch(seed=3)['target']
    fresh.eval()
    out = fresh.val_step(copy.deepcopy(batch))
    ref = fresh.student.val_step(copy.deepcopy(batch))
    assert torch.equal(out[0].seg_logits.data, ref[0].seg_logits.data)
    assert len(out) == 2 and 'pred_sem_seg' in out[0]


def test_bf16_autocast_on_cpu_and_overflow_skips_step(monkeypatch, cpu_only):
    from mmengine.optim.optimizer import amp_optimizer_wrapper as amp_mod
    monkeypatch.setattr(amp_mod, 'is_cuda_available', lambda: True)
    model = build(plugins=[dict(type='_RecordingPlugin')])
    ow = amp_mod.AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                 dtype='bfloat16')
    ow.loss_scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 8)
    dtypes = []
    model.student.decode_head.conv_seg.register_forward_hook(
        lambda m, i, o: dtypes.append(o.dtype))
    before = [p.detach().clone() for p in model.student.parameters()]
    log = model.train_step(make_batch(), ow)
    assert torch.bfloat16 in dtypes  # forward passes ran under bf16 autocast
    assert all(torch.isfinite(torch.as_tensor(v)) for v in log.values())
    after = [p.detach().clone() for p in model.student.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    # Overflow in one of the backward passes: the whole step is skipped.
    model.plugins[0].weight = float('inf')
    scale = ow.loss_scaler.get_scale()
    model.train_step(make_batch(seed=1), ow)
    assert all(torch.equal(a, b) for a, b in zip(after, model.student.parameters()))
    assert ow.loss_scaler.get_scale() == scale / 2
    assert all(p.grad is None or torch.all(p.grad == 0)
               for p in model.student.parameters())


def test_rejects_gradient_accumulation_and_bad_batches():
    model = build()
    ow = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1), accumulative_counts=2)
    with pytest.raises(ValueError, match='accumulation'):
        model.train_step(make_batch(), ow)
    with pytest.raises(KeyError, match="'source' and 'target'"):
        model.train_step(make_batch()['source'], sgd(model))
    with pytest.raises(ValueError, match='pseudo_threshold'):
        build(pseudo_threshold=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='fp16 AMP needs CUDA')
def test_fp16_amp_step_on_cuda():
    from mmengine.optim import AmpOptimWrapper
    model = build(plugins=[dict(type='_RecordingPlugin')]).cuda()
    ow = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                         dtype='float16')
    dtypes = []
    model.student.decode_head.conv_seg.register_forward_hook(
        lambda m, i, o: dtypes.append(o.dtype))
    before = [p.detach().clone() for p in model.student.parameters()]
    log = model.train_step(make_batch(), ow)
    assert torch.float16 in dtypes
    assert all(torch.isfinite(torch.as_tensor(v)) for v in log.values())
    assert any(not torch.equal(a, b) for a, b in zip(before,
                                                     model.student.parameters()))
    assert all(p.dtype == torch.float32 for p in model.teacher.parameters())

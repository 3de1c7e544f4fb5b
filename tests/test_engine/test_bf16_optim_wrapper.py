"""BF16OptimWrapper: bfloat16 autocast on the model's device, no loss scaling, and the
losses of the package in float32 under it (CPU autocast; CUDA where one is visible).

Each dtype check is also run against a wrong wrapper (none, or fp16 autocast) to show
that it would catch one."""
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.engine import BF16OptimWrapper
from mmseg_dida.engine.mixed_precision import autocast_device_type
from mmseg_dida.models.losses.dic_loss import weighted_cross_entropy
from mmseg_dida.models.utils.feature_distance import masked_feat_dist
from tests.helpers.uda import build_dacs, make_batch, tiny_hrda, tiny_segmentor

init_default_scope('mmseg')


class FP16Wrapper(OptimWrapper):
    """A wrong bf16 wrapper: fp16 autocast (and no loss scaling)."""

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast('cpu', dtype=torch.float16):
            yield


DIDA = dict(type='DiDA', recon_channels=8)
MIC = dict(type='MIC', mask_block_size=8)
# method -> (student, plug-ins)
METHODS = dict(daformer=(tiny_segmentor, []), daformer_dida=(tiny_segmentor, [DIDA]),
               mic_hrda_dida=(tiny_hrda, [MIC, DIDA]))


def dacs(method='daformer'):
    segmentor, plugins = METHODS[method]
    return build_dacs(segmentor(), plugins, pseudo_weight_ignore_top=0,
                      pseudo_weight_ignore_bottom=0, imnet_feature_dist_lambda=0.005,
                      imnet_feature_dist_classes=None)


def wrapper(model, wrapper_type='BF16OptimWrapper'):
    return build_optim_wrapper(model, dict(
        type=wrapper_type, optimizer=dict(type='AdamW', lr=1e-3)))


def module_output_dtypes(model, wrapper, x):
    """Output dtypes of every Conv2d and Linear of ``model`` in a forward of ``x``
    inside ``wrapper``'s context."""
    dtypes = set()
    hooks = [m.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
             for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with wrapper.optim_context(model):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return dtypes


def test_built_from_a_config_by_its_registered_name():
    model = dacs()
    ow = wrapper(model)
    assert type(ow) is BF16OptimWrapper
    assert not hasattr(ow, 'loss_scaler')  # bf16: no loss scaling


def test_context_runs_convs_and_matmuls_in_bf16_only_inside(cpu_only):
    seg = MODELS.build(tiny_segmentor())
    x = torch.randn(2, 3, 64, 64)
    assert autocast_device_type(seg) == 'cpu'
    assert module_output_dtypes(seg, wrapper(seg), x) == {torch.bfloat16}
    assert module_output_dtypes(seg, OptimWrapper(torch.optim.SGD(seg.parameters(),
                                                                  lr=0.1)), x) == {
        torch.float32}
    assert module_output_dtypes(seg, FP16Wrapper(torch.optim.SGD(seg.parameters(),
                                                                 lr=0.1)), x) == {
        torch.float16}
    assert seg(x).dtype == torch.float32  # outside the context: no autocast


def test_device_type_follows_the_parameters():
    cuda_param = SimpleNamespace(is_cuda=True)
    assert autocast_device_type(SimpleNamespace(parameters=lambda: iter([cuda_param]))
                                ) == 'cuda'
    assert autocast_device_type(torch.nn.Linear(2, 2)) == 'cpu'
    assert autocast_device_type(torch.nn.ReLU()) == 'cpu'  # no parameters


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_context_on_cuda_is_cuda_autocast():
    seg = MODELS.build(tiny_segmentor()).cuda()
    ow = wrapper(seg)
    assert autocast_device_type(seg) == 'cuda'
    assert module_output_dtypes(seg, ow, torch.randn(2, 3, 64, 64).cuda()) == {
        torch.bfloat16}


def test_seg_loss_resizes_and_reduces_in_float32():
    """bf16 logits at 1/4 of the label size: the loss equals the float32 computation
    from the same logits (CPU autocast would resize them in bf16)."""
    seg = MODELS.build(tiny_segmentor())
    head = seg.decode_head
    torch.manual_seed(0)
    logits = (3 * torch.randn(2, 4, 16, 16)).bfloat16()
    label = torch.randint(0, 4, (2, 1, 64, 64))
    weight = torch.rand(2, 64, 64)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        amp = head.weighted_loss_by_label(logits, label, weight)
    ref = head.weighted_loss_by_label(logits.float(), label, weight)
    assert amp['loss_ce'].dtype == torch.float32
    torch.testing.assert_close(amp['loss_ce'], ref['loss_ce'], rtol=1e-6, atol=0)
    # what a bf16 resize gives instead (the check above would see it)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        up = F.interpolate(logits, size=(64, 64), mode='bilinear')
    assert up.dtype == torch.bfloat16
    loss_bf16_resize = (F.cross_entropy(up.float(), label[:, 0], reduction='none')
                        * weight).mean()
    assert not torch.allclose(loss_bf16_resize, ref['loss_ce'], rtol=1e-6, atol=0)


def test_dic_loss_is_float32():
    """L_D of bf16 logits below the labels' size equals the float32 computation."""
    torch.manual_seed(0)
    logits = (3 * torch.randn(4, 4, 8, 8)).bfloat16()
    labels = torch.randint(0, 4, (4, 32, 32))
    tgt_weight = torch.rand(2, 32, 32)
    dic = MODELS.build(dict(type='DICLoss', loss_weight=0.5))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = dic(logits, labels, num_src=2, tgt_weight=tgt_weight)
        ce = weighted_cross_entropy(logits, labels[:, :8, :8])
    ref = dic(logits.float(), labels, num_src=2, tgt_weight=tgt_weight)
    assert set(losses) == {'loss_dic_src', 'loss_dic_tgt'} == set(ref)
    for key, value in losses.items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, ref[key], rtol=1e-6, atol=0)
    assert ce.dtype == torch.float32
    torch.testing.assert_close(ce, weighted_cross_entropy(logits.float(),
                                                          labels[:, :8, :8]))


def test_recon_loss_uses_the_unrounded_eps():
    """L_R from the float32 prediction against the float32 target: the eps is not
    rounded to bf16 (the old ``target.to(pred.dtype)`` did)."""
    head = MODELS.build(dict(type='ReconHead', in_channels=(8, 16), in_index=(0, 1),
                             channels=8, loss_weight=5.0))
    torch.manual_seed(0)
    feats = [torch.randn(2, 8, 16, 16), torch.randn(2, 16, 8, 8)]
    t = torch.tensor([3, 700])
    eps = torch.randn(2, 3, 16, 16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = head.loss(feats, t, eps)
        pred = head(feats, t)
    assert pred.dtype == torch.bfloat16 and loss.dtype == torch.float32
    torch.testing.assert_close(loss, 5.0 * F.mse_loss(pred.float(), eps), rtol=1e-6,
                               atol=0)
    rounded = 5.0 * F.mse_loss(pred.float(), eps.bfloat16().float())
    assert not torch.allclose(loss, rounded, rtol=1e-6, atol=0)


def test_feature_distance_is_float32():
    torch.manual_seed(0)
    feat = torch.randn(2, 8, 4, 4)
    ref = feat + 1e-2 * torch.randn_like(feat)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        dist = masked_feat_dist(feat.bfloat16(), ref.bfloat16())
    assert dist.dtype == torch.float32
    torch.testing.assert_close(dist, masked_feat_dist(feat.bfloat16().float(),
                                                      ref.bfloat16().float()))


@pytest.mark.parametrize('method', sorted(METHODS))
def test_uda_step_under_bf16(method, cpu_only):
    """One DACS step (DAFormer, + DiDA, MIC(HRDA) + DiDA): forward passes in bf16,
    every logged loss, the pseudo labels' confidence, the parameters, gradients and
    the EMA teacher in float32."""
    model = dacs(method)
    ow = wrapper(model)
    seen = set()
    classifier = [m for m in model.student.decode_head.modules()
                  if isinstance(m, torch.nn.Conv2d)][-1]
    classifier.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
    before = [p.detach().clone() for p in model.student.parameters()]
    model.vis_images = {}  # keep the step's pseudo-label confidence
    model.train_step(make_batch(seed=0), ow)
    model.vis_images = {}
    log = model.forward_backward(make_batch(seed=1), ow)
    assert seen == {torch.bfloat16}
    losses = {k: v for k, v in log.items() if 'loss' in k}
    assert 'src.decode.loss_ce' in losses and 'mix.decode.loss_ce' in losses
    if 'dida' in method:
        assert {'loss_dic_src', 'loss_dic_tgt', 'loss_recon'} <= set(losses)
    if 'mic' in method:
        assert {'src.decode.hr.loss_ce', 'masked.decode.loss_ce'} <= set(losses)
    assert {v.dtype for v in losses.values()} == {torch.float32}, {
        k: v.dtype for k, v in losses.items()}
    assert model.vis_images['pseudo_confidence'].dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.grad.dtype == torch.float32 for p in model.student.parameters()
               if p.grad is not None)
    assert any(not torch.equal(a, b) for a, b in zip(before,
                                                     model.student.parameters()))

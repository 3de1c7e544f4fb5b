"""The student contract (losses and features of a batch, with per-pixel weights) leaves
DAFormer and DAFormer+DiDA numerically where they were: the same seed gives the same
losses and the same parameters as the step computed the old way (mmseg's private
``_decode_head_forward_train``/``_auxiliary_head_forward_train`` with ``seg_weight`` data
samples, the feature distance on ``extract_feat(...)[-1]``, DiDA's degraded pass through
``decode_head(feats)`` and the DIC loss on its logits)."""
import copy
import types

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import mmseg_dida  # noqa: F401
from mmseg_dida.models.segmentors import EncoderDecoderUDA, as_uda_segmentor
from mmseg_dida.models.uda.dacs import stack_labels
from mmseg_dida.models.utils.feature_distance import masked_feat_dist, thing_class_mask
from mmseg_dida.models.utils.mixing import class_mix
from tests.helpers.uda import build_dacs, make_batch, move_fd_reference, tiny_segmentor


# ---------------------------------------------------- the step's old computations
def old_segmentor_loss(student, inputs, samples):
    feats = student.extract_feat(inputs)
    losses = student._decode_head_forward_train(feats, samples)
    if student.with_auxiliary_head:
        losses.update(student._auxiliary_head_forward_train(feats, samples))
    return losses, feats


def old_feature_distance(self, img, gt, feats):
    with torch.no_grad():
        self.imnet_model.eval()
        feat_ref = self.imnet_model.extract_feat(img)[-1].detach()
    feat = feats[-1]
    mask = thing_class_mask(gt, feat.shape[-2:], self.fd_classes, self.fd_min_ratio,
                            self.num_classes)
    return self.fd_lambda * masked_feat_dist(feat, feat_ref, mask, mask.sum().item())


def old_source_losses(self, ctx):
    src_img, src_gt = ctx.src_inputs, ctx.src_labels[:, None]
    losses, feats = old_segmentor_loss(self.student, src_img, ctx.src_data_samples)
    losses = {f'src.{k}': v for k, v in losses.items()}
    if self.imnet_model is not None:
        losses['src.loss_imnet_feat_dist'] = self.feature_distance(src_img, src_gt,
                                                                   feats)
    return losses


def old_mixed_losses(self, ctx):
    src_img, src_samples, tgt_img = ctx.src_inputs, ctx.src_data_samples, ctx.tgt_inputs
    pseudo_label, pseudo_weight = ctx.pseudo_label, ctx.pseudo_weight_masked
    src_gt = ctx.src_labels[:, None]
    masks = self.class_masks(src_gt)
    mixed_img = class_mix(masks, src_img, tgt_img)
    pre = self.student.data_preprocessor
    mixed_img = self.strong_aug(mixed_img, pre.mean, pre.std)
    mixed_label = class_mix(masks, src_gt[:, 0], pseudo_label)
    mixed_weight = class_mix(masks, torch.ones_like(pseudo_weight), pseudo_weight)
    samples = []
    for i, src_sample in enumerate(src_samples):
        sample = SegDataSample(metainfo=src_sample.metainfo)
        sample.gt_sem_seg = PixelData(data=mixed_label[i][None])
        sample.seg_weight = PixelData(data=mixed_weight[i][None])
        samples.append(sample)
    losses, _ = old_segmentor_loss(self.student, mixed_img, samples)
    return {f'mix.{k}': v for k, v in losses.items()}


def old_chunk_losses(self, ctx, x_t, t, target, labels, num_src, tgt_weight,
                     recon_scale=1.0):
    student = ctx.student
    with student.backbone.timestep(t):
        feats = student.extract_feat(x_t)
    losses = self.dic_loss(student.decode_head(feats), labels, num_src=num_src,
                           tgt_weight=tgt_weight, image_weight=self.ld_image_weight(t))
    if self.recon_head is not None:
        losses['loss_recon'] = recon_scale * self.recon_head.loss(feats, t, target)
    if num_src and self.degraded_fd_weight > 0:
        src_feats = [f[:num_src] for f in feats]
        if self.degraded_fd_reference == 'imnet':
            fd = ctx.imnet_feature_distance(ctx.src_inputs, labels[:num_src, None],
                                            src_feats)
        else:
            with torch.no_grad():
                ref = ctx.student.extract_feat(ctx.src_inputs)[-1].detach()
            fd = masked_feat_dist(src_feats[-1], ref)
        losses['loss_dic_fd'] = self.degraded_fd_weight * fd
    return losses


def old_way(model):
    model.source_losses = types.MethodType(old_source_losses, model)
    model.mixed_losses = types.MethodType(old_mixed_losses, model)
    model.feature_distance = types.MethodType(old_feature_distance, model)
    for plugin in model.plugins:
        plugin._chunk_losses = types.MethodType(old_chunk_losses, plugin)
    return model


# --------------------------------------------------------------------- the tests
def build(plugins=(), aux=False):
    seg = tiny_segmentor()
    if aux:
        seg['auxiliary_head'] = dict(copy.deepcopy(seg['decode_head']),
                                     in_index=[0, 1, 2, 3])
    return move_fd_reference(build_dacs(  # an FD reference away from the student: FD > 0
        seg, plugins, pseudo_threshold=0.26, pseudo_weight_ignore_top=4,
        pseudo_weight_ignore_bottom=8, imnet_feature_dist_lambda=0.1,
        imnet_feature_dist_classes=[1, 2], color_jitter_probability=0.0))


def run(model, steps=3):
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    torch.manual_seed(7)
    logs = [{k: float(v) for k, v in model.train_step(make_batch(seed=s), optim).items()}
            for s in range(steps)]
    return logs, [p.detach().clone() for p in model.parameters()]


DIDA = dict(type='DiDA', recon_channels=8, degraded_fd_weight=0.1)


@pytest.mark.parametrize('plugins, aux', [
    ((), False), ((), True), ((DIDA, ), False),
    (({**DIDA, 'memory_saving': 'per_domain', 'ld_t_weight': 'abar'}, ), False),
    (({**DIDA, 'degraded_fd_reference': 'clean'}, ), False),
], ids=['daformer', 'daformer_aux_head', 'dida_fd_imnet', 'dida_per_domain_abar',
        'dida_fd_clean'])
def test_same_seed_same_losses_and_parameters_as_the_old_step(plugins, aux):
    new = build(plugins, aux)
    old = old_way(copy.deepcopy(new))
    new_logs, new_params = run(new)
    old_logs, old_params = run(old)
    assert new_logs[-1]['pseudo_weight'] > 0.1  # the target terms are weighted
    assert new_logs[-1]['src.loss_imnet_feat_dist'] > 0
    if plugins:
        assert new_logs[-1]['loss_dic_fd'] > 0 and new_logs[-1]['loss_dic_tgt'] > 0
    if aux:
        assert 'mix.aux.loss_ce' in new_logs[-1]
    for a, b in zip(new_logs, old_logs):
        assert set(a) == set(b)
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key
    for p, q in zip(new_params, old_params):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_encoder_decoder_contract_equals_mmseg_loss_with_seg_weight_samples():
    model = MODELS.build(tiny_segmentor())
    model.train()
    seg = as_uda_segmentor(model)
    assert isinstance(seg, EncoderDecoderUDA)
    data = model.data_preprocessor(make_batch()['source'], True)
    labels = stack_labels(data['data_samples'])
    weight = torch.rand(2, 64, 64, generator=torch.Generator().manual_seed(0))
    for s, w in zip(data['data_samples'], weight):
        s.seg_weight = PixelData(data=w[None])
    ref = model.loss(data['inputs'], data['data_samples'])
    losses, out = seg.uda_forward_loss(data['inputs'], labels, weight)
    assert set(losses) == set(ref)
    for k in ref:
        torch.testing.assert_close(losses[k], ref[k])
    # the features the step's feature distance and plug-ins see
    assert out.pixel_box is None
    torch.testing.assert_close(out.feats[-1], model.extract_feat(data['inputs'])[-1])
    feat, view, view_labels = seg.fd_view(out, data['inputs'], labels[:, 0])
    assert feat is out.feats[-1] and view is data['inputs']
    assert torch.equal(view_labels, labels)
    half = out.select(slice(1, 2))
    assert half.logits.shape[0] == 1 and half.pixel_feats[0].shape[0] == 1


def test_a_student_without_the_contract_is_refused():
    with pytest.raises(TypeError, match='as_uda_segmentor'):
        as_uda_segmentor(torch.nn.Linear(2, 2))

"""Toy-size UDA models, batches and plug-in step contexts shared by the tests.

* segmentors: :func:`tiny_segmentor` (MiT 8-64 channels, 64x64), :func:`flat_segmentor`
  (8 channels per stage, 32x64: the tools' toy), :func:`tiny_hrda`;
* :func:`build_dacs`: a DACS model around one of them, with plug-ins, from seed 0;
* batches: :func:`make_batch` (labelled source, unlabelled target), :func:`split_batch`;
* contexts: :func:`plugin_context` (what DACS hands its plug-ins for a batch) and
  :func:`toy_context` (the same for ``make_batch`` with drawn pseudo labels);
* the exact multi-process configuration of ``tests/test_engine/test_ddp_equality.py``.
"""
import copy
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from mmseg_dida.models.uda import BaseUDAPlugin, UDADistributedWrapper
from mmseg_dida.models.uda.plugin import UDAStepContext

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]

init_default_scope('mmseg')


def tiny_segmentor(num_classes=4, head='WeightedSegformerHead', size=64):
    """A 4-stage MiT with 8-64 channels and a SegFormer head; no BN, no dropout."""
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=MEAN, std=STD,
                               bgr_to_rgb=False, pad_val=0, seg_pad_val=255,
                               size=(size, size)),
        backbone=dict(type='MixVisionTransformer', in_channels=3, embed_dims=8,
                      num_stages=4, num_layers=[1, 1, 1, 1], num_heads=[1, 2, 4, 8],
                      patch_sizes=[7, 3, 3, 3], sr_ratios=[4, 2, 1, 1],
                      out_indices=(0, 1, 2, 3), mlp_ratio=2, drop_path_rate=0.0),
        decode_head=dict(type=head, in_channels=[8, 16, 32, 64], in_index=[0, 1, 2, 3],
                         channels=8, dropout_ratio=0.0, num_classes=num_classes,
                         norm_cfg=None, align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                          loss_weight=1.0)),
        train_cfg=dict(), test_cfg=ConfigDict(mode='whole'))


# A 4-stage MiT with 8 channels per stage (the "flat" toy): the backbone of
# flat_segmentor and of the DiDA and DiffusionEncoder tests.
FLAT_MIT = dict(type='MixVisionTransformer', in_channels=3, embed_dims=8,
                num_stages=4, num_layers=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                patch_sizes=[7, 3, 3, 3], sr_ratios=[8, 4, 2, 1],
                out_indices=(0, 1, 2, 3), mlp_ratio=2, drop_path_rate=0.0)


def flat_segmentor(num_classes=4, head_norm_cfg=None):
    """The tools' toy: a 4-stage MiT with 8 channels per stage on 32x64 inputs and a
    SegFormer head (BN in the head with ``head_norm_cfg``); used by the export, infer
    and hook tests with ``make_batch(size=(32, 64))``."""
    head = dict(type='WeightedSegformerHead', in_channels=[8, 8, 8, 8],
                in_index=[0, 1, 2, 3], channels=8, num_classes=num_classes,
                loss_decode=dict(type='CrossEntropyLoss'))
    if head_norm_cfg is not None:
        head['norm_cfg'] = head_norm_cfg
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[100.0, 110.0, 120.0],
                               std=[50.0, 55.0, 60.0], bgr_to_rgb=True, size=(32, 64)),
        backbone=dict(FLAT_MIT), decode_head=head, train_cfg=dict(), test_cfg=dict(mode='whole'))


def tiny_hrda(num_classes=4, size=64, hr_crop=32, head='WeightedSegformerHead',
              **kwargs):
    """HRDA around the tiny MiT (LR scale 0.5, one HR crop of ``hr_crop``, crop
    coordinates divisible by 8 = output stride 4 / 0.5)."""
    seg = tiny_segmentor(num_classes, head, size)
    cfg = dict(type='HRDAEncoderDecoder', data_preprocessor=seg['data_preprocessor'],
               backbone=seg['backbone'],
               decode_head=dict(type='HRDAHead', single_scale_head=seg['decode_head'],
                                hr_loss_weight=0.1),
               scales=(0.5, 1.0), hr_crop_size=(hr_crop, hr_crop),
               crop_coord_divisible=8, feature_scale=0.5,
               test_cfg=ConfigDict(mode='whole'))
    cfg.update(kwargs)
    return cfg


def _half(n, size, num_classes, g, labelled, offset=0):
    h, w = size
    inputs, samples = [], []
    for i in range(n):
        img = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
        meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                    img_path=f'toy_{offset + i}.png')
        sample = SegDataSample(metainfo=meta)
        if labelled:
            blocks = torch.randint(0, num_classes, (1, 1, 2, 2), generator=g).float()
            lbl = F.interpolate(blocks, size=(h, w), mode='nearest')[0].long()
            sample.gt_sem_seg = PixelData(data=lbl)
        inputs.append(img)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def make_batch(n=2, size=64, num_classes=4, seed=0):
    """A collated UDA batch: labelled source, unlabelled target. ``size`` is an int
    (square) or (h, w)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    g = torch.Generator().manual_seed(seed)
    return dict(source=_half(n, size, num_classes, g, True),
                target=_half(n, size, num_classes, g, False, offset=100))


def split_batch(batch, parts):
    """Split a collated UDA batch into ``parts`` equal consecutive batches."""
    n = len(batch['source']['inputs'])
    k = n // parts
    return [{key: {f: v[i * k:(i + 1) * k] for f, v in half.items()}
             for key, half in batch.items()} for i in range(parts)]


# ---- DACS and the contexts it hands its plug-ins
def build_model(cfg):
    """Any model config (a segmentor or a UDA model) built from seed 0 in mmseg's
    scope; ``cfg`` is not modified."""
    init_default_scope('mmseg')
    torch.manual_seed(0)
    return MODELS.build(ConfigDict(copy.deepcopy(cfg)))


def flat_uda(plugins=()):
    """The config of DACS around :func:`flat_segmentor` with ``plugins`` and no
    ignored pseudo-label rows."""
    return dict(type='DACS', segmentor=flat_segmentor(), plugins=list(plugins),
                pseudo_weight_ignore_top=0, pseudo_weight_ignore_bottom=0)


def build_dacs(segmentor=None, plugins=(), init_weights=True, **dacs):
    """A DACS model in training mode, built from seed 0: the student ``segmentor``
    (a config; :func:`tiny_segmentor` by default), ``plugins`` (configs) and DACS's own
    arguments ``dacs``; ``init_weights`` as a run does (False keeps the modules'
    construction-time weights)."""
    init_default_scope('mmseg')  # as a run's config does
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='DACS', segmentor=tiny_segmentor() if segmentor is None else segmentor,
        plugins=list(plugins), **dacs))
    if init_weights:
        model.init_weights()
    model.train()
    return model


def move_fd_reference(model, scale=0.05):
    """Move the frozen ImageNet model (the feature distance's reference) away from the
    student by Gaussian noise of std ``scale`` from the global generator, so that
    L_FD > 0: at distance ~0 the gradient of the L2 norm is a unit vector set by float
    rounding (ill-conditioned, batch dependent)."""
    with torch.no_grad():
        for p in model.imnet_model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model


def plugin_context(model, batch, pseudo_label, pseudo_weight, **fields):
    """The :class:`UDAStepContext` a plug-in of ``model`` sees at iteration 0 for the
    collated UDA ``batch`` (preprocessed by the student) with the given pseudo labels
    and weights, (N, H, W); ``fields``: further context fields
    (``pseudo_weight_masked``)."""
    src = model.student.data_preprocessor(batch['source'], True)
    tgt = model.student.data_preprocessor(batch['target'], True)
    return UDAStepContext(
        student=model.student, teacher=model.teacher_model,
        src_inputs=src['inputs'], src_data_samples=src['data_samples'],
        tgt_inputs=tgt['inputs'], tgt_data_samples=tgt['data_samples'],
        pseudo_label=pseudo_label, pseudo_weight=pseudo_weight, iteration=0,
        src_labels=torch.stack([s.gt_sem_seg.data[0] for s in src['data_samples']]),
        **fields)


def toy_context(model, seed=0, weight=0.6, ignore_top=None):
    """:func:`plugin_context` of ``make_batch(seed=seed)`` (two 64x64 images a domain,
    4 classes): pseudo labels drawn from a generator seeded with ``seed``, the constant
    pseudo weight ``weight``, and with ``ignore_top`` the masked weight
    (``pseudo_weight_masked``) with that many top rows zeroed."""
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 4, (2, 64, 64), generator=g)
    pseudo_weight = torch.full((2, 64, 64), weight)
    fields = {}
    if ignore_top is not None:
        fields['pseudo_weight_masked'] = pseudo_weight.clone()
        fields['pseudo_weight_masked'][:, :ignore_top] = 0
    return plugin_context(model, make_batch(seed=seed), label, pseudo_weight, **fields)


# ---- the exact multi-process configuration (tests/test_engine/test_ddp_equality.py)
STEPS = 2
WORLD = 2


@MODELS.register_module(force=True)
class FeatNormPlugin(BaseUDAPlugin):

    def losses(self, ctx):
        feat = ctx.student.extract_feat(ctx.src_inputs)[-1]
        return {'loss_featnorm': 0.01 * feat.pow(2).mean()}


def _even_class_masks(labels):
    return (labels % 2 == 0).float()


def exact_dacs():
    model = move_fd_reference(build_dacs(
        plugins=[dict(type='FeatNormPlugin')], pseudo_threshold=0.261,
        pseudo_weight_ignore_top=4, pseudo_weight_ignore_bottom=8,
        color_jitter_probability=1.0, blur=False, imnet_feature_dist_lambda=0.1,
        imnet_feature_dist_classes=[1, 2]))
    model.class_masks = _even_class_masks
    return model


def optim_wrapper(model):
    return build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='SGD', lr=0.5, momentum=0.9)))


def run_steps(model, batches_per_step):
    ow = optim_wrapper(model)
    logs = []
    for batch in batches_per_step:
        logs.append({k: float(v) for k, v in model.train_step(batch, ow).items()})
    return logs


def ddp_worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world)
    try:
        wrapped = UDADistributedWrapper(exact_dacs())
        batches = [split_batch(make_batch(n=4, seed=s), world)[rank]
                   for s in range(STEPS)]
        logs = run_steps(wrapped, batches)
        torch.save(dict(student=[p.detach() for p in wrapped.module.student.parameters()],
                        teacher=[p.detach() for p in wrapped.module.teacher.parameters()],
                        logs=logs), os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()

"""A DACS + DiDA toy whose degraded pass can be made to run out of memory, for the
tests of DiDA's memory_saving='auto' (tests/test_models/test_uda/
test_memory_saving_auto.py); importable by the processes those tests start."""
import os

import torch
import torch.distributed as dist
from mmengine.config import ConfigDict
from mmengine.optim import OptimWrapper

import mmseg_dida  # noqa: F401
from mmseg_dida.models.uda.wrappers import UDADistributedWrapper
from tests.helpers.uda import build_dacs, make_batch

H, W, C = 32, 32, 4
SEGMENTOR = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[120.0] * 3,
                           std=[60.0] * 3, bgr_to_rgb=True, pad_val=0,
                           seg_pad_val=255, size=(H, W)),
    backbone=dict(type='MixVisionTransformer', in_channels=3, embed_dims=8,
                  num_stages=2, num_layers=[1, 1], num_heads=[1, 1],
                  patch_sizes=[7, 3], strides=[4, 2], sr_ratios=[4, 2], out_indices=(0, 1),
                  mlp_ratio=2, drop_path_rate=0.0),
    # BatchNorm in the head: the host's passes move its running statistics.
    decode_head=dict(type='WeightedSegformerHead', in_channels=[8, 8], in_index=[0, 1],
                     channels=8, dropout_ratio=0.0, num_classes=C, align_corners=False,
                     norm_cfg=dict(type='BN', requires_grad=True),
                     loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=dict(), test_cfg=dict(mode='whole'))


def build(**dida):
    """DACS around SEGMENTOR with DiDA (``dida``: its arguments), as configs give them;
    per-domain BatchNorm statistics unless given (the head has BatchNorm, and 'auto'
    walks modes that run the domains apart: the rule that makes every mode compute
    the same losses)."""
    dida.setdefault('degraded_norm', 'per_domain')
    return build_dacs(ConfigDict(SEGMENTOR),
                      [ConfigDict(type='DiDA', recon_channels=8, **dida)],
                      imnet_feature_dist_lambda=0.0, pseudo_weight_ignore_top=0,
                      pseudo_weight_ignore_bottom=0)


def batch(seed):
    """A UDA batch of 2 + 2 images at the toy's size (tests.helpers.uda.make_batch)."""
    return make_batch(n=2, size=(H, W), num_classes=C, seed=seed)


def fail_in(model, modes, error=torch.OutOfMemoryError):
    """Make the model's DiDA raise ``error`` at the end of its degraded pass while
    its active mode is in ``modes``; returns the list of (iteration, mode) of every
    degraded pass."""
    plugin = model.plugins[0]
    original = plugin.degraded_forward
    calls = []

    def degraded_forward(student, x_t, t, *args, **kwargs):
        out = original(student, x_t, t, *args, **kwargs)
        calls.append((int(model.local_iter), plugin.active_memory_saving))
        if plugin.active_memory_saving in modes:
            raise error('CUDA out of memory (simulated)')
        return out

    plugin.degraded_forward = degraded_forward
    return calls


def train(model, steps=2, lr=1e-2):
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=lr))
    torch.manual_seed(7)
    logs = [{k: v.detach().clone() for k, v in model.train_step(batch(i), optim).items()}
            for i in range(steps)]
    return logs, optim


def rank_worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world)
    try:
        model = build(memory_saving='auto')
        # Only rank 1 runs out, and only in 'none'.
        calls = fail_in(model, {'none'} if rank == 1 else set())
        wrapped = UDADistributedWrapper(model)
        optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
        torch.manual_seed(7)
        for i in range(2):
            wrapped.train_step(batch(10 * rank + i), optim)
        torch.save(dict(calls=calls, mode=model.plugins[0].active_memory_saving,
                        params=[p.detach() for p in model.parameters()]),
                   os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()

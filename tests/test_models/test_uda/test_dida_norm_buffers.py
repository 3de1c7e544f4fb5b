"""Training-only passes never change what inference uses: DiDA's degraded passes run
with batch statistics but leave every normalisation buffer of the student as the host's
own passes set it (BatchNorm in h, and in g and g' for CNN backbones)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper
from torch import nn

import mmseg_dida  # noqa: F401
from mmseg_dida.deploy import deploy_segmentor
from mmseg_dida.models.utils import norm_buffers, preserved_norm_buffers
from tests.helpers.uda import build_dacs, make_batch, tiny_segmentor, toy_context

BN = dict(type='BN', requires_grad=True)


def bn_segmentor():
    """A toy ResNet (BatchNorm in g, hence in g') with a BatchNorm SegFormer head,
    no dropout."""
    seg = tiny_segmentor()
    seg['backbone'] = dict(type='ResNetV1c', depth=18, stem_channels=8,
                           base_channels=8, num_stages=4, out_indices=(0, 1, 2, 3),
                           norm_cfg=BN)
    seg['decode_head'].update(in_channels=[8, 16, 32, 64], norm_cfg=BN)
    return seg


def build(**dida):
    """DACS around the BatchNorm toy with DiDA (``dida``: its arguments)."""
    return build_dacs(bn_segmentor(), [dict(type='DiDA', recon_channels=8, **dida)],
                      imnet_feature_dist_lambda=0.0, pseudo_weight_ignore_top=0,
                      pseudo_weight_ignore_bottom=0)


def snapshot(module):
    return {k: v.clone() for k, v in norm_buffers(module).items()}


def test_preserved_norm_buffers_restores_in_place_and_keeps_batch_statistics():
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    bn.train()
    x = 3.0 * torch.randn(2, 3, 5, 5) + 1.0
    live = norm_buffers(bn)
    assert set(live) == {'1.running_mean', '1.running_var', '1.num_batches_tracked'}
    before = snapshot(bn)
    with preserved_norm_buffers(bn):
        y = bn(x)
        assert not torch.equal(bn[1].running_mean, before['1.running_mean'])
    # inside: normalised with the batch's own statistics (training-mode maths)
    z = bn[0](x)
    ref = F.batch_norm(z, None, None, bn[1].weight, bn[1].bias, training=True,
                       eps=bn[1].eps)
    torch.testing.assert_close(y, ref)
    # after: bitwise the old values, in the same tensors
    for name, buf in norm_buffers(bn).items():
        assert buf is live[name]
        assert torch.equal(buf, before[name]), name


@pytest.mark.parametrize('saving', ['none', 'per_domain', 'g_prime', 'encoders'])
def test_dida_loss_groups_leave_every_student_norm_buffer_bitwise(saving):
    # a BatchNorm student needs per-domain statistics with the modes that split the
    # domains into two passes
    model = build(memory_saving=saving,
                  degraded_norm='joint' if saving == 'none' else 'per_domain')
    names = set(norm_buffers(model.student))
    # BatchNorm in h, g and g' are all covered
    for part in ('decode_head.', 'backbone.backbone.', 'backbone.g_prime.'):
        assert any(n.startswith(part) for n in names), part
    before = snapshot(model.student)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    log = model.plugin_losses(model.plugins[0], toy_context(model), optim)
    assert log['loss_dic_src'] > 0 and log['loss_recon'] > 0
    grads = [p.grad for p in model.student.backbone.g_prime.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)  # it trained
    after = norm_buffers(model.student)
    for name, buf in before.items():
        assert torch.equal(after[name], buf), name


def test_update_norm_stats_true_lets_degraded_passes_move_running_statistics():
    """The earlier behaviour, kept as an option for measurements: the comparison
    above could fail."""
    model = build(update_norm_stats=True)
    assert not model.plugins[0].preserves_norm_buffers
    before = snapshot(model.student)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    model.plugin_losses(model.plugins[0], toy_context(model), optim)
    after = norm_buffers(model.student)
    changed = [n for n in before if not torch.equal(after[n], before[n])]
    assert any(n.startswith('decode_head.') for n in changed)
    assert any(n.startswith('backbone.g_prime.') for n in changed)


def _train(model, steps=3):
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    torch.manual_seed(123)
    for it in range(steps):
        model.train_step(make_batch(seed=10 + it), optim)
    return deploy_segmentor(model).state_dict()


@pytest.mark.parametrize('update_norm_stats', [False, True])
def test_exported_statistics_equal_a_run_without_the_degraded_pass(update_norm_stats):
    """DAFormer+DiDA whose DiDA losses weigh 0 (so parameters move as without DiDA)
    against the same model with the plug-in removed: with the degraded passes' buffers
    preserved, the exported network (parameters and running statistics) is bitwise
    the same after 3 training steps; with update_norm_stats=True it is not."""
    model = build(lambda_d=0.0, recon=None, update_norm_stats=update_norm_stats)
    plain = copy.deepcopy(model)
    plain.plugins = nn.ModuleList()  # the host runs no degraded pass
    with_dida, without = _train(model), _train(plain)
    assert set(with_dida) == set(without)
    stats = [k for k in with_dida if 'running_' in k]
    assert stats and any(k.startswith('decode_head.') for k in stats)
    differ = [k for k in with_dida if not torch.equal(with_dida[k], without[k])]
    if update_norm_stats:
        assert any('running_' in k for k in differ)
    else:
        assert differ == []

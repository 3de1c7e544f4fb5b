"""UDAVisualizationHook and DiDAHook pictures: what the UDA step keeps, only when
asked, what the pictures show, and that Local PNGs and TensorBoard events are written."""
import copy
import glob
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.visualization import Visualizer
from mmseg.registry import HOOKS, MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.engine.hooks.dida_hook import degraded_prediction_strip, strip_inputs
from mmseg_dida.models.uda.plugin import BaseUDAPlugin
from mmseg_dida.models.utils.norm_buffers import preserved_norm_buffers
from mmseg_dida.utils.visualization import colourise, label_palette, panel, to_tiles
from tests.helpers.uda import flat_segmentor, make_batch

SEG = flat_segmentor(head_norm_cfg=dict(type='BN', requires_grad=True))


class MaskPlugin(BaseUDAPlugin):
    """A stand-in for MIC: hands a random patch mask to the visualisation (drawn
    from a generator of its own: pictures must not move the training's stream)."""

    def losses(self, ctx):
        if ctx.vis_images is not None:
            gen = torch.Generator().manual_seed(ctx.iteration)
            mask = (torch.rand(ctx.tgt_inputs.shape[0], 1, 4, 8, generator=gen)
                    > 0.5).float()
            ctx.vis_images['mic_mask'] = torch.nn.functional.interpolate(
                mask, size=ctx.tgt_inputs.shape[-2:])
        return {}


def _model(plugins):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(type='DACS', segmentor=copy.deepcopy(SEG),
                                    plugins=plugins, imnet_feature_dist_lambda=0.0,
                                    pseudo_weight_ignore_top=2,
                                    pseudo_weight_ignore_bottom=0))
    model.init_weights()
    return model.train()


def _runner(tmp_path, model, it, name):
    vis = Visualizer.get_instance(
        name, save_dir=str(tmp_path),  # backends write to <save_dir>/vis_data
        vis_backends=[dict(type='LocalVisBackend'),
                      dict(type='TensorboardVisBackend')])
    return SimpleNamespace(model=model, iter=it, visualizer=vis)


def _step(hook, runner, data, optim):
    hook.before_train_iter(runner, 0, data_batch=data)
    asked = runner.model.vis_images is not None
    runner.model.train_step(data, optim)
    kept = dict(runner.model.vis_images or {})
    hook.after_train_iter(runner, 0, data_batch=data)
    return asked, kept


def test_step_keeps_named_images_only_when_asked_and_they_are_right(tmp_path):
    model = _model([MaskPlugin()])
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    hook = HOOKS.build(dict(type='UDAVisualizationHook', interval=2))
    runner = _runner(tmp_path, model, 0, 'vis_a')
    # iteration 1: not due
    asked, kept = _step(hook, runner, make_batch(size=(32, 64), seed=0), optim)
    assert not asked and not kept and model.vis_images is None
    runner.iter = 1
    data = make_batch(size=(32, 64), seed=1)
    asked, kept = _step(hook, runner, data, optim)  # iteration 2: due
    assert asked and model.vis_images is None  # nothing kept after the step
    assert set(kept) == {'src_img', 'src_label', 'tgt_img', 'pseudo_label',
                         'pseudo_confidence', 'pseudo_weight', 'mix_img',
                         'mix_label', 'mic_mask'}
    assert not any(v.requires_grad for v in kept.values())
    # the source labels are the batch's; the pseudo labels and their confidence are
    # the teacher's argmax and max softmax on the target images
    src_gt = torch.stack([s.gt_sem_seg.data for s in data['source']['data_samples']])
    assert torch.equal(kept['src_label'], src_gt)
    teacher = model.teacher_model
    with torch.no_grad(), preserved_norm_buffers(teacher):
        logits = teacher.encode_decode(kept['tgt_img'], [
            dict(img_shape=(32, 64), ori_shape=(32, 64), pad_shape=(32, 64))] * 2)
    prob, label = logits.softmax(1).max(1)
    assert torch.equal(kept['pseudo_label'], label)
    assert torch.allclose(kept['pseudo_confidence'], prob, atol=1e-6)
    # the weight is q^T, zero on the 2 ignored top rows
    w = kept['pseudo_weight']
    assert (w[:, :2] == 0).all() and torch.allclose(
        w[:, 2:], (prob >= model.pseudo_threshold).float().mean().expand_as(w[:, 2:]))
    # ClassMix: every mixed label is the source label or the pseudo label there
    mix = kept['mix_label']
    assert ((mix == src_gt[:, 0]) | (mix == label)).all()


def test_panel_png_and_tensorboard_event_written(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    model = _model([MaskPlugin()])
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    hook = HOOKS.build(dict(type='UDAVisualizationHook', interval=1, max_images=2))
    runner = _runner(tmp_path, model, 0, 'vis_b')
    _step(hook, runner, make_batch(size=(32, 64), seed=0), optim)
    runner.visualizer.close()
    png = tmp_path / 'vis_data' / 'vis_image' / 'uda_step_1.png'
    assert png.is_file() and png.stat().st_size > 0
    import cv2
    picture = cv2.imread(str(png))
    # 9 named columns of 64 px (+2 gap), 2 rows of 32 px (+2) under a 14 px title
    assert picture.shape == (14 + 2 * 34, 9 * 66, 3)
    events = glob.glob(str(tmp_path / 'vis_data' / 'events.out.tfevents.*'))
    assert len(events) == 1 and osp.getsize(events[0]) > 0
    acc = EventAccumulator(events[0], size_guidance={'images': 0})
    acc.Reload()
    assert 'uda_step' in acc.Tags()['images']
    img = acc.Images('uda_step')[0]
    assert img.step == 1 and (img.height, img.width) == picture.shape[:2]


def test_tiles_and_panel_values():
    mean = torch.tensor([100.0, 110.0, 120.0])
    std = torch.tensor([50.0, 55.0, 60.0])
    img = torch.zeros(1, 3, 4, 6)  # normalised zeros -> the mean colour
    assert (to_tiles(img, mean, std)[0] == np.array([100, 110, 120])).all()
    labels = torch.tensor([[[0, 1], [255, 18]]])
    tile = to_tiles(labels)[0]
    assert tile[0, 0].tolist() == [128, 64, 128]  # road
    assert tile[1, 0].tolist() == [0, 0, 0] and tile[1, 1].tolist() == [119, 11, 32]
    conf = torch.tensor([[[0.0, 1.0]]])
    heat = to_tiles(conf)[0]
    assert heat.shape == (1, 2, 3) and not np.array_equal(heat[0, 0], heat[0, 1])
    with pytest.raises(ValueError, match='shape'):
        to_tiles(torch.zeros(2, 5, 4, 4))
    p = panel({'a': [tile], 'b': [heat]}, header=10, gap=1)
    assert p.shape == (10 + 3, 2 * 3, 3)
    assert (p[10:12, 3:5] == heat.repeat(2, axis=0).repeat(1, axis=1)[:2, :2]).all()


def test_dida_hook_draws_degraded_path_prediction(tmp_path):
    model = _model([dict(type='DiDA', recon_channels=8)])
    student = model.student
    runner = _runner(tmp_path, model, 1, 'vis_c')
    hook = HOOKS.build(dict(type='DiDAHook', vis_interval=2,
                            vis_timesteps=(0, 50, 99)))
    data = make_batch(size=(32, 64), seed=0)
    buffers = {k: v.clone() for k, v in student.state_dict().items()
               if 'running' in k or 'num_batches' in k}
    rng = torch.get_rng_state()
    hook.after_train_iter(runner, 0, data_batch=data)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in buffers.items())
    runner.visualizer.close()
    img_dir = tmp_path / 'vis_data' / 'vis_image'
    assert (img_dir / 'dida_x_t_2.png').is_file()
    assert (img_dir / 'dida_x_t_pred_2.png').is_file()
    # the strip is the argmax of the degraded path at each t, side by side
    student.eval()  # deterministic (no dropout) for the comparison
    x0 = student.data_preprocessor(dict(inputs=[data['source']['inputs'][0]]),
                                   False)['inputs'][0]
    x_t, t = strip_inputs(model.plugins[0], x0, (0, 50, 99))
    strip = degraded_prediction_strip(model.plugins[0], student, x_t, t)
    with torch.no_grad():
        _, logits = model.plugins[0].segment_degraded(student, x_t, t)
    logits = torch.nn.functional.interpolate(logits, size=(32, 64), mode='bilinear')
    expected = torch.cat(list(logits.argmax(1)), dim=1)
    assert strip.shape == (32, 64 * 3, 3)
    assert np.array_equal(strip, colourise(expected, label_palette()))


def test_keeping_pictures_does_not_change_training(tmp_path):
    """Steps that keep their images train exactly as steps that do not."""
    params = []
    for interval in (0, 1):
        model = _model([MaskPlugin()])
        optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-2))
        hook = HOOKS.build(dict(type='UDAVisualizationHook', interval=interval))
        runner = _runner(tmp_path / str(interval), model, 0, f'vis_d{interval}')
        torch.manual_seed(1)
        for it in range(2):
            runner.iter = it
            _step(hook, runner, make_batch(size=(32, 64), seed=it), optim)
        params.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*params))

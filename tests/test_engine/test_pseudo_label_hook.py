"""PseudoLabelStatsHook: per-class pseudo-label fractions and IoU against the target's
training labels (flip and resize as the step saw the image), atomic records that a
resumed run continues, and a training stream that does not depend on the hook."""
import copy
import json
import os
from types import SimpleNamespace

import cv2
import numpy as np
import torch
from mmengine.config import ConfigDict
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmseg.registry import HOOKS, MODELS
from mmseg.structures import SegDataSample

import mmseg_dida  # noqa: F401
from mmseg_dida.engine.hooks.pseudo_label_hook import target_label_path
from tests.helpers.uda import flat_segmentor, make_batch


def test_target_label_path_is_cityscapes_layout():
    img = '/d/target/leftImg8bit/train/city/city_train_000001_leftImg8bit.png'
    assert target_label_path(img) == (
        '/d/target/gtFine/train/city/city_train_000001_gtFine_labelTrainIds.png')


def _sample(tmp_path, name, gt, img_shape, flip):
    folder = tmp_path / 'leftImg8bit' / 'train'
    label_folder = tmp_path / 'gtFine' / 'train'
    folder.mkdir(parents=True, exist_ok=True)
    label_folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(label_folder / f'{name}_gtFine_labelTrainIds.png'), gt)
    return SegDataSample(metainfo=dict(
        img_path=str(folder / f'{name}_leftImg8bit.png'), img_shape=img_shape,
        flip=flip, flip_direction='horizontal'))


def test_fractions_and_iou_against_flipped_resized_labels(tmp_path):
    # Label 4x8: left half class 0, right half class 1, one ignore pixel.
    gt = np.zeros((4, 8), np.uint8)
    gt[:, 4:] = 1
    gt[0, 0] = 255
    # The step saw the image flipped and at twice the size (8x16): class 1 on the left.
    flipped_up = np.repeat(np.repeat(gt[:, ::-1], 2, 0), 2, 1).astype(np.int64)
    pseudo = torch.from_numpy(flipped_up.copy())
    pseudo[pseudo == 255] = 2      # the teacher labels the ignore pixel class 2
    pseudo[0, 0:2] = 2             # and two class-1 pixels class 2 (wrong)
    pseudo = torch.nn.functional.pad(pseudo, (0, 4, 0, 2))[None]  # padded batch
    hook = HOOKS.build(dict(type='PseudoLabelStatsHook', interval=1))
    hook._reset(3)
    hook.accumulate(pseudo, [_sample(tmp_path, 'a', gt, (8, 16), True)])
    rec = hook.summary(1, ['c0', 'c1', 'c2'])
    # 128 pixels: class 2 has the 4 ignore pixels (flipped into class 0's half) and
    # the 2 wrong ones (class 1's half).
    assert rec['pl_frac'] == [round(60 / 128, 6), round(62 / 128, 6),
                              round(6 / 128, 6)]
    # GT without the 4 ignore pixels: class 0 60, class 1 64 pixels.
    assert rec['gt_frac'] == [round(60 / 124, 6), round(64 / 124, 6), 0.0]
    assert rec['pl_iou'][0] == 100.0
    assert rec['pl_iou'][1] == round(100 * 62 / 64, 3)
    assert rec['pl_iou'][2] == 0.0
    assert rec['pl_acc'] == round(100 * 122 / 124, 3)


def test_without_labels_only_fractions(tmp_path):
    hook = HOOKS.build(dict(type='PseudoLabelStatsHook', interval=1))
    hook._reset(2)
    sample = SegDataSample(metainfo=dict(img_path=str(tmp_path / 'x.png'),
                                         img_shape=(2, 2), flip=False))
    hook.accumulate(torch.tensor([[[0, 1], [1, 1]]]), [sample])
    rec = hook.summary(5, ['a', 'b'])
    assert rec['pl_frac'] == [0.25, 0.75] and 'pl_iou' not in rec


def _model():
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(type='DACS', segmentor=copy.deepcopy(
        flat_segmentor()), imnet_feature_dist_lambda=0.0, pseudo_weight_ignore_top=0,
        pseudo_weight_ignore_bottom=0))
    model.init_weights()
    return model.train()


class _Logger:
    def __init__(self):
        self.lines = []

    def info(self, msg):
        self.lines.append(msg)


def _train(tmp_path, hook, steps, start=0):
    torch.manual_seed(1)
    model = _model()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-2))
    metainfo = dict(classes=('a', 'b', 'c', 'd'))
    runner = SimpleNamespace(
        model=model, iter=start, work_dir=str(tmp_path), logger=_Logger(),
        train_dataloader=SimpleNamespace(dataset=SimpleNamespace(metainfo=metainfo)))
    if hook is not None:
        hook.before_train(runner)
    logs = []
    for i in range(start, start + steps):
        runner.iter = i
        data = make_batch(size=(16, 32), seed=i)
        logs.append({k: float(v) for k, v in model.train_step(data, optim).items()})
        if hook is not None:
            hook.after_train_iter(runner, 0, data_batch=data)
    return model, logs, runner


def test_stream_unchanged_and_records_resume(tmp_path):
    _, plain_logs, _ = _train(tmp_path / 'plain', None, 4)
    os.makedirs(tmp_path / 'hook')
    hook = HOOKS.build(dict(type='PseudoLabelStatsHook', interval=2))
    model, logs, runner = _train(tmp_path / 'hook', hook, 4)
    assert logs == plain_logs  # the hook draws nothing and changes nothing
    path = tmp_path / 'hook' / 'pseudo_label_stats.jsonl'
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r['iter'] for r in records] == [2, 4]
    assert all(abs(sum(r['pl_frac']) - 1) < 1e-5 for r in records)
    assert 'pseudo labels, iterations up to 4' in runner.logger.lines[-1]
    assert model.last_pseudo_labels is None  # nothing kept beyond the step
    # A run resumed at iteration 2 replaces the windows past it.
    hook2 = HOOKS.build(dict(type='PseudoLabelStatsHook', interval=2))
    _train(tmp_path / 'hook', hook2, 2, start=2)
    again = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r['iter'] for r in again] == [2, 4]
    assert again[0] == records[0]

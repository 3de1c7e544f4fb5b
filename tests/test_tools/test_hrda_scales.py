"""tools/analysis/hrda_scales.py: the three views are HRDA's own (the fused view is the
segmentor's inference, the HR view the head's window canvas), the attention is in
[0, 1], and the tool runs on an HRDA + DiDA checkpoint of the tiny benchmark."""
import copy
import csv
import importlib.util
import os.path as osp

import torch
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from tests.helpers.uda import tiny_hrda

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools/analysis/hrda_scales.py')
spec = importlib.util.spec_from_file_location('hrda_scales', TOOL)
hrda_scales = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hrda_scales)


def test_views_are_hrdas_own():
    init_default_scope('mmseg')
    torch.manual_seed(0)
    seg = MODELS.build(copy.deepcopy(tiny_hrda(num_classes=4, size=64, hr_crop=32)))
    seg.init_weights()
    seg.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = hrda_scales.scale_views(seg, x, None)
        reference = seg.encode_decode(x, [{}] * 2)
        feats = seg.extract_feat(x)
        fused, lr_seg, _ = seg.decode_head(feats)
    assert torch.allclose(out['fused'], reference, atol=1e-5)
    up = torch.nn.functional.interpolate(lr_seg, size=(64, 64), mode='bilinear',
                                         align_corners=False)
    assert torch.allclose(out['lr'], up, atol=1e-5)
    att = out['att']
    assert att.shape == (2, 4, 64, 64) and att.min() >= 0 and att.max() <= 1
    # With the attention forced to 1 the fused prediction is the HR view.
    head = seg.decode_head
    head.scale_attention_map = lambda feats: torch.ones_like(
        head.scale_attention(feats))
    with torch.no_grad():
        only_hr = hrda_scales.scale_views(seg, x, None)
    assert torch.allclose(only_hr['fused'], out['hr'], atol=1e-5)


SMOKE = ['model.data_preprocessor.size=(64,128)', 'default_hooks.logger.interval=1',
         'default_hooks.visualization.draw=False', 'train_cfg.max_iters=4',
         'param_scheduler.0.end=2', 'model.segmentor.hr_crop_size=(32,64)',
         'train_cfg.val_interval=4', 'param_scheduler.1.end=4',
         'default_hooks.checkpoint.interval=4'] + [
    f'{dl}.{k}' for dl in ('train_dataloader', 'test_dataloader',
                           'val_dataloader', 'test_cfg.extra.source.dataloader',
                           'val_cfg.extra.source.dataloader')
    for k in ('num_workers=0', 'persistent_workers=False')]


def test_tool_on_hrda_dida(tiny_benchmark, tmp_path, run_tool):
    config = osp.join(REPO, 'configs/dida/hrda_mit_tiny_procedural_dida.py')
    work = tmp_path / 'work'
    res = run_tool([osp.join(REPO, 'tools/train.py'), config, '--work-dir', str(work),
                    '--cfg-options'] + SMOKE, cwd=tiny_benchmark)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / 'scales'
    res = run_tool([TOOL, config, str(work / 'iter_4.pth'), '--out', str(out),
                    '--timesteps', '50', '--max-images', '2'], cwd=tiny_benchmark)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = list(csv.DictReader(open(out / 'hrda_scales.csv')))
    keys = [(r['domain'], r['t'], r['view']) for r in rows]
    assert keys == [(d, t, v) for d in ('source', 'target') for t in ('clean', '50')
                    for v in ('fused', 'lr', 'hr', 'att')]
    for r in rows:
        if r['view'] == 'att':
            values = [float(r[c]) for c in ('road', 'pole', 'traffic sign')]
            assert all(0 <= v <= 1 for v in values)
        else:
            assert 0 <= float(r['mIoU']) <= 100
    assert 'traffic sign' in res.stdout
    res = run_tool([TOOL, config, str(work / 'iter_4.pth'), '--focus', 'polee',
                    '--timesteps', '--max-images', '1', '--out', str(out)],
                   cwd=tiny_benchmark)
    assert res.returncode == 2 and 'polee' in res.stderr

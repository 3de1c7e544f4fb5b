"""--iters of the accuracy benchmark moves the LR schedule's end with the loop."""
import os.path as osp

from mmengine.config import Config, DictAction

from mmseg_dida.apis.benchmark import METHODS, REPO, schedule_options


def _apply(cfg, opts):
    parsed = {}
    for opt in opts:
        key, value = opt.split('=', 1)
        parsed[key] = DictAction._parse_iterable(value)
    cfg.merge_from_dict(parsed)  # what tools/train.py does with --cfg-options
    return cfg


def test_benchmark_schedule_stretches_poly_not_warmup():
    cfg = Config.fromfile(osp.join(REPO, METHODS['DAFormer']))
    warm, poly = cfg.param_scheduler
    assert cfg.train_cfg.max_iters == 4000 and poly.end >= 4000 > warm.end
    out = _apply(Config.fromfile(osp.join(REPO, METHODS['DAFormer'])),
                 schedule_options(cfg, 6000))
    assert out.train_cfg.max_iters == 6000 and out.train_cfg.val_interval == 6000
    assert out.param_scheduler[0].end == warm.end
    assert out.param_scheduler[1].end == poly.end + 2000


def test_daformer_schedule_keeps_its_plus_one_offset():
    path = osp.join(REPO, 'configs/daformer/daformer_mitb5_gta2cs.py')
    cfg = Config.fromfile(path)
    assert [s.end for s in cfg.param_scheduler] == [1501, 40001]
    out = _apply(Config.fromfile(path), schedule_options(cfg, 8000))
    assert [s.end for s in out.param_scheduler] == [1501, 8001]

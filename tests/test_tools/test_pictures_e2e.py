"""A tiny DAFormer+DiDA training through tools/train.py with the picture hooks: the
console shows progress, pictures reach the Local and TensorBoard backends, and
tools/test.py --show-dir writes the predictions."""
import glob
import os.path as osp
import re

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN = osp.join(REPO, 'tools/train.py')
TEST = osp.join(REPO, 'tools/test.py')
LOADERS = ('train_dataloader', 'val_dataloader', 'val_cfg.extra.source.dataloader',
           'test_cfg.extra.source.dataloader')
FAST = ['model.segmentor.data_preprocessor.size=(64,128)',
        'default_hooks.logger.interval=1', 'train_cfg.max_iters=4',
        'train_cfg.val_interval=4', 'default_hooks.checkpoint.interval=4'] + [
    f'{dl}.{k}' for dl in LOADERS for k in ('num_workers=0', 'persistent_workers=False')]


@pytest.fixture(scope='module')
def trained(tiny_benchmark, run_tool):
    cfg = tiny_benchmark / 'dida_pictures.py'
    cfg.write_text(
        f"_base_ = ['{REPO}/configs/dida/daformer_mit_tiny_procedural_dida.py']\n"
        "custom_hooks = [_base_.uda_vis_hook | dict(interval=2),\n"
        "                _base_.dida_hook | dict(vis_interval=2, diag_interval=0)]\n")
    work = tiny_benchmark / 'work_pictures'
    res = run_tool([TRAIN, str(cfg), '--work-dir', str(work), '--cfg-options'] + FAST,
                   cwd=tiny_benchmark)
    assert res.returncode == 0, res.stderr[-3000:]
    return tiny_benchmark, work, res


def test_console_shows_progress_with_eta_and_losses(trained):
    _, _, res = trained
    lines = re.findall(r'Iter\(train\) \[\s*(\d)/4\].*eta: \S+.*loss', res.stdout)
    assert lines == ['1', '2', '3', '4'], res.stdout[-3000:]


def test_pictures_reach_local_and_tensorboard(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    _, work, _ = trained
    vis = glob.glob(str(work / '*' / 'vis_data'))
    assert len(vis) == 1
    for name in ('uda_step', 'dida_x_t', 'dida_x_t_pred'):
        for step in (2, 4):
            png = osp.join(vis[0], 'vis_image', f'{name}_{step}.png')
            assert osp.getsize(png) > 0, png
    events = glob.glob(osp.join(vis[0], 'events.out.tfevents.*'))
    assert len(events) == 1 and osp.getsize(events[0]) > 0
    acc = EventAccumulator(events[0], size_guidance={'images': 0, 'scalars': 0})
    acc.Reload()
    assert {'uda_step', 'dida_x_t', 'dida_x_t_pred'} <= set(acc.Tags()['images'])
    assert [e.step for e in acc.Images('uda_step')] == [2, 4]
    assert 'mIoU' in acc.Tags()['scalars']  # the validation scalars too


def test_show_dir_writes_every_prediction(trained, run_tool):
    cwd, work, _ = trained
    show = work / 'show'
    res = run_tool([TEST, str(work / 'deploy_config.py'), str(work / 'deploy.pth'),
                    '--work-dir', str(work / 'test'), '--show-dir', str(show),
                    '--cfg-options'] + [o for o in FAST if 'loader' in o], cwd=cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    pngs = glob.glob(str(show / 'vis_data' / 'vis_image' / 'test_*.png'))
    # one per target val image (the tiny benchmark has 4)
    assert len(pngs) == 4 and all(osp.getsize(p) > 0 for p in pngs)

"""tools/infer.py: a folder of two images and a short generated video, with the
exported plain model and with the training checkpoint (UDA config, student)."""
import importlib.util
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from mmseg_dida.deploy import save_deployable
from mmseg_dida.utils.visualization import label_palette
from tests.helpers.uda import flat_segmentor, make_batch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
INFER = osp.join(REPO, 'tools/infer.py')
SEG = flat_segmentor()
TEST_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                 dict(type='PackSegInputs')]


def _tool():
    spec = importlib.util.spec_from_file_location('infer_tool', INFER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """(training config, training checkpoint, deploy config, deploy checkpoint,
    the trained UDA model) of DAFormer+DiDA after two steps."""
    tmp = tmp_path_factory.mktemp('infer')
    init_default_scope('mmseg')
    cfg = Config(dict(default_scope='mmseg',
                      custom_imports=dict(imports=['mmseg_dida'],
                                          allow_failed_imports=False),
                      model=dict(type='DACS', segmentor=SEG,
                                 plugins=[dict(type='DiDA', recon_channels=8)],
                                 imnet_feature_dist_lambda=0.0,
                                 pseudo_weight_ignore_top=0,
                                 pseudo_weight_ignore_bottom=0),
                      test_pipeline=TEST_PIPELINE,
                      custom_hooks=[dict(type='DiDAHook')]))
    cfg_path = str(tmp / 'train_cfg.py')
    cfg.dump(cfg_path)
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(cfg.model))
    model.init_weights()
    model.train()
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    for it in range(3):
        model.train_step(make_batch(size=(32, 64), seed=it), optim)
    model.eval()
    ckpt = str(tmp / 'iter_3.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    deploy_ckpt, deploy_cfg = save_deployable(model, cfg, str(tmp), 'deploy')
    return cfg_path, ckpt, deploy_cfg, deploy_ckpt, model


def _images(folder):
    """Two images of different sizes in a folder (one in a sub-folder)."""
    rng = np.random.default_rng(1)
    (folder / 'sub').mkdir(parents=True)
    a = rng.integers(0, 256, (40, 72, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / 'a.png'), a)
    cv2.imwrite(str(folder / 'sub' / 'b.jpg'), b)
    return {'a': a, 'sub/b': cv2.imread(str(folder / 'sub' / 'b.jpg'))}


def _student_labels(model, img):
    """The training model's clean path, by hand: BGR -> RGB, normalise, argmax."""
    pre = model.student.data_preprocessor
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float().flip(1)
    x = (x - pre.mean) / pre.std
    h, w = img.shape[:2]
    with torch.no_grad():
        logits = model.student.encode_decode(
            x, [dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))])
    return logits[0].argmax(0).numpy()


@pytest.mark.parametrize('which', ['deployed', 'training', 'training-on-deploy-config',
                                   'deployed-on-training-config'])
def test_folder_of_two_images(models, tmp_path, which, capsys):
    """Every pairing the strict loader maps gives the training model's predictions."""
    cfg_path, ckpt, deploy_cfg, deploy_ckpt, model = models
    images = _images(tmp_path / 'in')
    config, checkpoint = {
        'deployed': (deploy_cfg, deploy_ckpt),
        'training': (cfg_path, ckpt),
        'training-on-deploy-config': (deploy_cfg, ckpt),
        'deployed-on-training-config': (cfg_path, deploy_ckpt)}[which]
    out = tmp_path / 'out'
    rc = _tool().main([config, checkpoint, str(tmp_path / 'in'), '--out', str(out),
                       '--batch-size', '2', '--labels', '--device', 'cpu'])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    colours = label_palette()
    for name, img in images.items():
        labels = cv2.imread(str(out / 'labels' / f'{name}.png'), cv2.IMREAD_UNCHANGED)
        expected = _student_labels(model, img)
        assert labels.shape == img.shape[:2]
        np.testing.assert_array_equal(labels, expected)
        mask = cv2.imread(str(out / 'masks' / f'{name}.png'))
        np.testing.assert_array_equal(mask[..., ::-1], colours[expected])
        over = cv2.imread(str(out / 'overlays' / f'{name}.png')).astype(float)
        blend = 0.5 * img.astype(float) + 0.5 * mask.astype(float)
        assert np.abs(over - blend).max() <= 1.0
    # Cityscapes palette: class 0 is road's purple (RGB 128, 64, 128)
    assert colours[0].tolist() == [128, 64, 128] and colours[255].tolist() == [0, 0, 0]
    assert re.search(r'2/2', captured.err), captured.err  # the progress bar
    assert not list(out.rglob('*.tmp*'))


def test_short_video_through_the_command_line(models, tmp_path, run_tool):
    _, _, deploy_cfg, deploy_ckpt, model = models
    video = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 5.0, (64, 48))
    rng = np.random.default_rng(2)
    for _ in range(5):
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    out = tmp_path / 'vid'
    res = run_tool([INFER, deploy_cfg, deploy_ckpt, video, '--out', str(out),
                    '--batch-size', '2', '--device', 'cpu'], cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.search(r'5/5 \[', res.stderr), res.stderr[-2000:]
    assert '5 frames segmented' in res.stdout
    for kind in ('mask', 'overlay'):
        cap = cv2.VideoCapture(str(out / f'clip_{kind}.mp4'))
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        assert len(frames) == 5 and frames[0].shape == (48, 64, 3)
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)
    assert sorted(p.name for p in out.iterdir()) == ['clip_mask.mp4',
                                                     'clip_overlay.mp4']


def test_bad_input_is_one_line(models, tmp_path, capsys):
    _, _, deploy_cfg, deploy_ckpt, _ = models
    (tmp_path / 'notes.txt').write_text('x')
    rc = _tool().main([deploy_cfg, deploy_ckpt, str(tmp_path / 'notes.txt'),
                       '--out', str(tmp_path / 'o')])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith('error: ') and 'notes.txt' in err
    assert len(err.strip().splitlines()) == 1
    (tmp_path / 'empty').mkdir()
    rc = _tool().main([deploy_cfg, deploy_ckpt, str(tmp_path / 'empty'),
                       '--out', str(tmp_path / 'o')])
    assert rc == 2 and 'no images' in capsys.readouterr().err
    # a checkpoint of another model: named, not a traceback
    other = tmp_path / 'other.pth'
    torch.save(dict(state_dict={'x': torch.zeros(1)}), str(other))
    _images(tmp_path / 'imgs')
    rc = _tool().main([deploy_cfg, str(other), str(tmp_path / 'imgs'),
                       '--out', str(tmp_path / 'o')])
    err = capsys.readouterr().err
    assert rc == 2 and 'does not match the model' in err and 'other.pth' in err
    assert not osp.exists(tmp_path / 'o')


def test_masks_use_the_palette_of_the_configs_dataset():
    """A dataset with its own class table (the own-data guide's worked example) is
    drawn in its own palette; a config without one in Cityscapes'."""
    from mmseg_dida.utils.visualization import dataset_palette
    custom = Config.fromfile(osp.join(REPO, 'configs/custom/daformer_mit_tiny_custom.py'))
    table = custom.test_dataloader.dataset.metainfo.palette
    colours = dataset_palette(custom)
    assert colours[:len(table)].tolist() == [list(c) for c in table]
    assert colours[255].tolist() == [0, 0, 0]
    labels = np.array([[0, 1], [4, 255]], dtype=np.uint8)
    bgr = _tool().colourise(labels, colours)
    assert bgr[0, 1, ::-1].tolist() == list(table[1])
    assert bgr[1, 0, ::-1].tolist() == list(table[4])
    bench = Config.fromfile(osp.join(REPO, 'configs/benchmark/daformer_mit_tiny_procedural.py'))
    assert dataset_palette(bench)[:19].tolist() == label_palette()[:19].tolist()

"""tools/export.py --onnx: the deployed network as ONNX (dynamic H/W), its parity with
onnxruntime, the sizes printed; the deployed checkpoint through mmseg's own API."""
import importlib.util
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import mmseg_dida  # noqa: F401
from tests.helpers.uda import flat_segmentor, make_batch

pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG = flat_segmentor()
TEST_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
# float32 through two runtimes: observed ~1e-5 on the toy model
LOGIT_TOL = 1e-3


def _tool():
    spec = importlib.util.spec_from_file_location('export_tool',
                                                  osp.join(REPO, 'tools/export.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope='module')
def dida_run(tmp_path_factory):
    """A DAFormer+DiDA model trained two steps, saved as a training checkpoint."""
    tmp = tmp_path_factory.mktemp('onnx')
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
    cfg_path = str(tmp / 'run.py')
    cfg.dump(cfg_path)
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(cfg.model))
    model.init_weights()
    model.train()
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    for it in range(2):
        model.train_step(make_batch(size=(32, 64), seed=it), optim)
    ckpt = str(tmp / 'run.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    return tmp, cfg_path, ckpt, model.eval()


@pytest.fixture(scope='module')
def exported(dida_run):
    import contextlib
    import io
    tmp, cfg_path, ckpt, model = dida_run
    out = tmp / 'out'
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        _tool().main([cfg_path, ckpt, '--out-dir', str(out), '--onnx'])
    return out, buf.getvalue()


def test_onnx_matches_pytorch_and_has_dynamic_hw(dida_run, exported):
    import onnx
    import onnxruntime as ort
    _, _, _, model = dida_run
    out, printed = exported
    path = out / 'deploy.onnx'
    graph = onnx.load(str(path)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    m = re.search(r'max_abs_logit_diff=([0-9.e+-]+) label_agreement=([0-9.]+)', printed)
    assert m, printed
    assert float(m.group(1)) < LOGIT_TOL
    assert 'opset 18' in printed
    # independently of the tool: the training student's clean path, a size the
    # tool did not check, batch 3
    student = model.student
    pre = student.data_preprocessor
    image = torch.randint(0, 256, (3, 3, 96, 224), generator=torch.Generator()
                          .manual_seed(5)).float()
    x = (image.flip(1) - pre.mean) / pre.std
    size = (96, 224)
    with torch.no_grad():
        ref = student.encode_decode(x, [dict(img_shape=size, ori_shape=size,
                                             pad_shape=size)] * 3)
    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    logits, labels = sess.run(None, {'image': image.numpy()})
    assert logits.shape == (3, 4, 96, 224) and labels.shape == (3, 96, 224)
    assert np.abs(logits - ref.numpy()).max() < LOGIT_TOL
    assert (labels == ref.argmax(1).numpy()).mean() > 0.999


def test_sizes_printed_before_and_after_stripping(dida_run, exported):
    _, _, ckpt, model = dida_run
    out, printed = exported
    rows = {}
    for line in printed.splitlines():
        m = re.match(r'(training model \(all parts\)|deployed segmentor(?:, ONNX)?)'
                     r'\s+([\d,]+)\s+([\d.]+)', line)
        if m:
            rows[m.group(1)] = (int(m.group(2).replace(',', '')), float(m.group(3)))
    assert set(rows) == {'training model (all parts)', 'deployed segmentor',
                         'deployed segmentor, ONNX'}, printed
    n_train = sum(p.numel() for p in model.parameters())
    n_deploy = sum(p.numel() for p in MODELS.build(ConfigDict(SEG)).parameters())
    assert rows['training model (all parts)'][0] == n_train
    assert rows['deployed segmentor'][0] == n_deploy < n_train
    assert abs(rows['deployed segmentor'][1]
               - osp.getsize(out / 'deploy.pth') / 2**20) < 0.01
    assert rows['training model (all parts)'][1] > rows['deployed segmentor'][1]
    # progress: each stage says when it is done
    assert re.search(r'exporting ONNX: done in [\d.]+ s', printed)


def test_deployed_model_through_mmseg_api(dida_run, exported, tmp_path):
    """mmseg.apis.init_model + inference_model on the exported checkpoint and
    config predict what the training model's clean path predicts."""
    import cv2
    from mmseg.apis import inference_model, init_model
    _, _, _, model = dida_run
    out, _ = exported
    plain = init_model(str(out / 'deploy_config.py'), str(out / 'deploy.pth'),
                       device='cpu')
    img = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    path = str(tmp_path / 'img.png')
    cv2.imwrite(path, img)
    result = inference_model(plain, path)
    # the student, by hand: BGR -> RGB, normalise, whole-image inference
    pre = model.student.data_preprocessor
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float().flip(1)
    x = (x - pre.mean) / pre.std
    with torch.no_grad():
        ref = model.student.encode_decode(
            x, [dict(img_shape=(48, 80), ori_shape=(48, 80), pad_shape=(48, 80))])
    assert torch.allclose(result.seg_logits.data, ref[0], atol=1e-5)
    assert torch.equal(result.pred_sem_seg.data[0], ref[0].argmax(0))


def test_missing_onnx_packages_is_one_clear_error(dida_run, monkeypatch, capsys):
    import builtins
    tmp, cfg_path, ckpt, _ = dida_run
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == 'onnxruntime':
            raise ImportError('No module named onnxruntime')
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', fake_import)
    rc = _tool().main([cfg_path, ckpt, '--out-dir', str(tmp / 'none'), '--onnx'])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith('error:') and '\n' not in err  # one line, exit 2
    assert 'onnxruntime' in err and 'pip install' in err
    assert not osp.exists(tmp / 'none')  # nothing written before the error

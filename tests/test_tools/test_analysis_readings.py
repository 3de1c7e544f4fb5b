"""The diagnostics of DiDA's readings (tools/analysis/dida_readings.py) and the linear
probe of frozen features (tools/analysis/linear_probe.py), on the tiny benchmark."""
import csv
import json
import os.path as osp

import numpy as np
import pytest
import torch

from tests.helpers.reliability import FAST, run_train, schedule
from tests.helpers.tools import load_tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DIDA = osp.join(REPO, 'configs/dida/daformer_mit_tiny_procedural_dida.py')
readings = load_tool('tools/analysis/dida_readings.py')
probe = load_tool('tools/analysis/linear_probe.py')


@pytest.fixture(scope='module')
def dida_checkpoint(tiny_benchmark, tmp_path_factory):
    work = tmp_path_factory.mktemp('dida_run')
    run_train(DIDA, work, tiny_benchmark,
              ['--cfg-options'] + FAST + schedule(2, ckpt_interval=2, val_interval=1000))
    return str(work / 'iter_2.pth')


def test_gradient_tap_records_each_loss_terms_gradient_into_g(tiny_benchmark, tmp_path,
                                                             monkeypatch):
    monkeypatch.chdir(tiny_benchmark)
    out = tmp_path / 'grad'
    assert readings.main(['gradients', DIDA, '--iters', '3', '--every', '2', '--out',
                          str(out), '--cfg-options'] + [
                              o.replace('model.', 'model.segmentor.') for o in FAST
                              if not o.startswith(('val_', 'test_', 'default_hooks'))]) == 0
    records = [json.loads(ln) for ln in open(out / 'gradients.jsonl')]
    assert [r['iter'] for r in records] == [0, 1, 2]
    assert ('grad' in records[0], 'grad' in records[1], 'grad' in records[2]) == (
        True, False, True)
    grads = records[2]['grad']
    for key in ('src.decode.loss_ce', 'mix.decode.loss_ce', 'loss_dic_src',
                'loss_recon'):
        assert grads[key] > 0, key
    assert all(r['update'] > 0 for r in records[1:])  # g moves (warm-up lr > 0)
    summary = readings.gradient_summary(records, windows=((0, 1), (1, 3)))
    assert summary.count('\n') == 3 and '| 0-0 |' in summary


def test_t_buckets_and_bn_statistics_of_a_trained_dida_run(tiny_benchmark, tmp_path,
                                                          monkeypatch, dida_checkpoint,
                                                          capsys):
    monkeypatch.chdir(tiny_benchmark)
    out = tmp_path / 'readings'
    quiet = [f'{dl}.{k}' for dl in ('test_dataloader', 'test_cfg.extra.source.dataloader',
                                    'train_dataloader')
             for k in ('num_workers=0', 'persistent_workers=False')]
    assert readings.main(['t-buckets', DIDA, dida_checkpoint, '--max-images', '2',
                          '--out', str(out), '--cfg-options',
                          'model.segmentor.data_preprocessor.size=(64,128)'] + quiet) == 0
    rows = list(csv.DictReader(open(out / 't_buckets.csv')))
    assert {(r['domain'], int(r['t'])) for r in rows} == {
        (d, t) for d in ('target', 'source') for t in readings.T_GRID}
    target = [r for r in rows if r['domain'] == 'target']
    abar = [float(r['abar']) for r in target]
    assert all(a > b for a, b in zip(abar, abar[1:]))  # more noise with t
    for r in target:
        assert 0 <= float(r['agree_pseudo']) <= 1 and 0 <= float(r['q']) <= 1
    classes = [k[len('recall.'):] for k in rows[0] if k.startswith('recall.')]
    assert 'pole' in classes and 'traffic sign' in classes
    present = [c for c in classes if not np.isnan(float(rows[0]['recall.' + c]))]
    assert 'road' in present and len(present) < len(classes)  # not all 19 drawn
    for r in rows:
        for c in present:
            assert 0 <= float(r['recall.' + c]) <= 1
        assert (r.get('agree.road') not in (None, '')) == (r['domain'] == 'target')
    printed = capsys.readouterr().out
    assert 'the noise std exceeds it from t =' in printed
    assert '| domain | t | ' + ' | '.join(present) + ' |' in printed  # present only
    assert readings.main(['bn-stats', DIDA, dida_checkpoint, '--batches', '2', '--out',
                          str(out), '--cfg-options',
                          'model.segmentor.data_preprocessor.size=(64,128)'] + quiet) == 0
    stats = json.load(open(out / 'bn_stats.json'))
    assert any(name.startswith('decode_head.') for name in stats['layers'])
    assert all(v['variance_ratio'] >= 1 - 1e-6 for v in stats['layers'].values())
    assert set(stats['losses']) == {'joint', 'per_domain'}


def test_class_hits_count_right_and_all_pixels_per_label_class():
    labels = torch.tensor([[0, 0, 1, 1, 1, 255, 3]])
    pred = torch.tensor([[0, 1, 1, 1, 0, 1, 3]])
    hits = readings.class_hits(pred, labels, num_classes=3)
    # class 0: 1 of 2 right; class 1: 2 of 3; class 2 absent; 255 and 3 (>= 3) left out
    np.testing.assert_array_equal(hits, [[1, 2, 0], [2, 3, 0]])
    recalls = readings._recalls('recall', hits, ('a', 'b', 'c'))
    assert recalls['recall.a'] == 0.5 and abs(recalls['recall.b'] - 2 / 3) < 1e-12
    assert np.isnan(recalls['recall.c'])


def test_class_signal_is_the_spread_of_class_means():
    x = torch.zeros(1, 3, 2, 4)
    x[:, :, :, 2:] = 2.0  # class 1 on the right half, 2 above class 0's 0
    labels = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])
    assert readings.class_signal(x, labels) == pytest.approx(np.std([0.0, 2.0], ddof=1))


def test_probe_reads_classes_written_into_the_features():
    """A linear probe of features that hold the label one-hot classifies perfectly;
    of pure noise, at chance."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (600, ), generator=g)
    onehot = torch.nn.functional.one_hot(y, 19).float() + 0.01 * torch.randn(
        600, 19, generator=g)
    fitted = probe.fit_probe(onehot, y, 19, steps=50)
    assert (fitted(onehot).argmax(1) == y).float().mean() == 1.0
    noise = torch.randn(600, 19, generator=g)
    fitted = probe.fit_probe(noise[:300], y[:300], 19, steps=50)
    assert (fitted(noise[300:]).argmax(1) == y[300:]).float().mean() < 0.6


def test_probe_tool_on_the_tiny_benchmark(tiny_benchmark, tmp_path, capsys):
    assert probe.main(['--data-root', str(tiny_benchmark / 'data' / 'procedural'),
                       '--weights', osp.join(REPO, 'pretrained/mit_tiny_formula.pth'),
                       '--pixels', '32', '--out', str(tmp_path)]) == 0
    result = json.load(open(tmp_path / 'linear_probe.json'))
    assert set(result['results']) == {'mit_tiny_formula.pth', 'random init'}
    for r in result['results'].values():
        assert set(r) == {'source', 'target'}
        assert 0 <= r['source']['mIoU'] <= 100
    assert 'Linear probe of frozen features, source val IoU per class' in \
        capsys.readouterr().out

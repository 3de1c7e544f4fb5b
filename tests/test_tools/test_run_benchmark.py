"""The README's main job at smoke size: every method trains (two at a time, with a
status line per run), is tested and exported, and the mIoU and per-class tables are
printed."""
import os.path as osp
import re

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SMOKE = [
    'model.data_preprocessor.size=(64,128)', 'default_hooks.logger.interval=1',
    'default_hooks.visualization.draw=False',
] + [f'{dl}.{k}' for dl in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                            'val_cfg.extra.source.dataloader',
                            'test_cfg.extra.source.dataloader')
     for k in ('num_workers=0', 'persistent_workers=False')]


def test_main_job_smoke(tiny_benchmark, tmp_path, run_tool):
    work = tmp_path / 'work'
    res = run_tool([osp.join(REPO, 'tools/run_benchmark.py'), '--iters', '6',
                    '--status-every', '0.5', '--work-root', str(work),
                    '--cfg-options'] + SMOKE, cwd=tiny_benchmark, timeout=900)
    out = res.stdout
    assert res.returncode == 0, (out + res.stderr)[-3000:]
    # progress on the console while training, one line per running job
    assert re.search(r'\[benchmark\] \[DAFormer\+DiDA\] iter \d+/6\s+eta \S+\s+loss',
                     out), out[-3000:]
    for method in ('source-only', 'DAFormer', 'DAFormer+DiDA'):
        assert f'[benchmark] [{method}] finished' in out
        assert re.search(rf'\| {re.escape(method)}\s+\| [\d.]+\s+\| [\d.]+', out)
    # the per-class table: a header with the benchmark's classes, one row per method
    header = re.search(r'\| method\s+\|(.*road.*)\|', out)
    assert header and 'sky' in header.group(1), out[-3000:]
    stem = 'daformer_mit_tiny_formula_procedural_dida_6it'  # the default regime's
    assert osp.isfile(work / stem / 'export' / 'deploy.pth')
    assert osp.isfile(work / stem / 'test' / 'test_metrics.json')
    # a second run reuses every finished training
    res = run_tool([osp.join(REPO, 'tools/run_benchmark.py'), '--iters', '6',
                    '--methods', 'DAFormer', '--work-root', str(work),
                    '--cfg-options'] + SMOKE, cwd=tiny_benchmark, timeout=600)
    assert res.returncode == 0 and '[DAFormer] reusing' in res.stdout


def _load_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'run_benchmark', osp.join(REPO, 'tools', 'run_benchmark.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_each_gap_has_its_own_data_root():
    tool = _load_tool()
    assert tool.parse_args([]).data_root == osp.join('data', 'procedural')
    assert tool.parse_args(['--gap', 'fog']).data_root == osp.join('data', 'procedural_fog')
    assert tool.parse_args(['--gap', 'fog', '--data-root', 'x']).data_root == 'x'


def test_benchmark_data_generates_the_gap_and_refuses_another(tmp_path, monkeypatch):
    from mmseg_dida.apis.benchmark import benchmark_data
    from mmseg_dida.datasets import procedural as P
    generate = P.generate_benchmark
    monkeypatch.setattr(P, 'generate_benchmark', lambda root, progress, gap: (
        generate(root, size=(32, 32), counts=dict(train=1, val=1), gap=gap)))
    root = str(tmp_path / 'procedural_camera')
    assert benchmark_data(root, 'camera')['gap'] == 'camera'
    assert benchmark_data(root, 'camera')['gap'] == 'camera'  # reused
    with pytest.raises(RuntimeError, match=re.escape(
            f"{root} holds the 'camera' benchmark, not 'fog'; pass --gap camera, "
            'or another --data-root for fog')):
        benchmark_data(root, 'fog')


@pytest.mark.parametrize('method', ['source-only', 'DAFormer', 'DAFormer+DiDA', 'hrda'])
def test_data_root_options_move_every_dataset(method):
    from mmengine.config import Config, DictAction

    from mmseg_dida.apis.benchmark import METHODS, data_root_options
    from mmseg_dida.datasets.transforms.checks import dataset_nodes
    path = METHODS.get(method) or osp.join(
        REPO, 'configs/dida/hrda_mit_tiny_procedural_dida.py')
    assert data_root_options(Config.fromfile(path), 'data/procedural/') == []
    opts = data_root_options(Config.fromfile(path), 'data/procedural_fog')
    cfg = Config.fromfile(path)
    cfg.merge_from_dict({k: DictAction._parse_iterable(v)
                         for k, v in (o.split('=', 1) for o in opts)})
    roots = {p: n['data_root'] for p, n in dataset_nodes(cfg)}
    assert len(roots) == len(opts) >= 5
    assert roots['val_dataloader.dataset'] == 'data/procedural_fog/target'
    assert roots['test_dataloader.dataset'] == 'data/procedural_fog/target'
    assert roots['val_cfg.extra.source.dataloader.dataset'] == 'data/procedural_fog/source'
    train = 'train_dataloader.dataset' + ('' if method == 'source-only' else '.target')
    assert roots[train] == ('data/procedural_fog/source' if method == 'source-only'
                            else 'data/procedural_fog/target')

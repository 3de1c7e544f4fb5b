"""tools/benchmarks/accuracy.py: the multi-seed table on a gap preset at toy size (its
data found in data/procedural_<gap>, every dataset re-rooted there, work dirs suffixed
by the preset, mean +- std per method and per class), and its data-root options."""
import importlib.util
import os.path as osp
import re

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'benchmarks', 'accuracy.py')
SMOKE = [
    'model.data_preprocessor.size=(64,128)', 'default_hooks.logger.interval=1',
    'default_hooks.visualization.draw=False',
] + [f'{dl}.{k}' for dl in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                            'val_cfg.extra.source.dataloader',
                            'test_cfg.extra.source.dataloader')
     for k in ('num_workers=0', 'persistent_workers=False')]


def _load_tool():
    spec = importlib.util.spec_from_file_location('accuracy_tool', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_gap_runs_both_methods_on_its_data_with_mean_std(tmp_path, run_tool):
    from mmseg_dida.datasets.procedural import generate_benchmark
    generate_benchmark(str(tmp_path / 'data' / 'procedural_fog'), size=(128, 64),
                       counts=dict(train=4, val=2), gap='fog')
    work = tmp_path / 'work'
    # one method, two seeds: 4 fresh interpreters (DAFormer+DiDA is re-rooted by the
    # same options: tests/test_tools/test_run_benchmark.py checks them per method)
    res = run_tool([TOOL, '--regime', 'scratch', '--gap', 'fog', '--seeds', '0', '1',
                    '--methods', 'DAFormer',
                    '--iters', '2', '--jobs', '2', '--work-root', str(work),
                    '--cfg-options'] + SMOKE, cwd=tmp_path, timeout=900)
    out = res.stdout
    assert res.returncode == 0, (out + res.stderr)[-3000:]
    title = 'Procedural benchmark, gap fog, regime scratch, target val, seeds [0, 1]'
    assert title in out
    # mean +- std over the two seeds, then each seed
    assert re.search(r'\| DAFormer\s+\| [\d.]+ \+- [\d.]+\s+\| [\d.]+ / [\d.]+', out), \
        out[-3000:]
    for seed in (0, 1):
        run = work / f'DAFormer_s{seed}_fog'
        assert (run / 'iter_2.pth').is_file()
        assert (run / 'test' / 'test_metrics.json').is_file()
        # trained on the preset's target, not on data/procedural (absent here)
        dumped = (run / 'daformer_mit_tiny_procedural.py').read_text()
        assert "data_root='data/procedural_fog/target'" in dumped
    assert f'{title}: IoU per class' in out
    header = re.search(r'\| method\s+\|(.*road.*)\|', out)
    assert header and 'sky' in header.group(1), out[-3000:]


def test_data_options_follow_the_gap(tmp_path):
    tool = _load_tool()
    assert tool.parse_args([]).data_root == osp.join('data', 'procedural')
    assert tool.parse_args(['--gap', 'fog']).data_root == osp.join('data', 'procedural_fog')
    assert tool.parse_args(['--gap', 'fog', '--data-root', 'x']).data_root == 'x'
    from mmseg_dida.apis.benchmark import METHODS
    opts = tool.data_options(METHODS['DAFormer'], 'data/procedural_fog')
    assert 'val_dataloader.dataset.data_root=data/procedural_fog/target' in opts
    # the default root leaves every config as it is, also one without a data_root
    other = tmp_path / 'other.py'
    other.write_text("train_cfg = dict(max_iters=2)\n")
    assert tool.data_options(str(other), 'data/procedural/') == []
    with pytest.raises(RuntimeError, match='--data-root data/procedural_fog: .*other.py: '
                                           'no top-level data_root'):
        tool.data_options(str(other), 'data/procedural_fog')

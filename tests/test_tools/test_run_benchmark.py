"""The README's main job at smoke size: every method trains (two at a time, with a
status line per run), is tested and exported, and the mIoU and per-class tables are
printed."""
import os.path as osp
import re

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
    stem = 'daformer_mit_tiny_procedural_dida_6it'
    assert osp.isfile(work / stem / 'export' / 'deploy.pth')
    assert osp.isfile(work / stem / 'test' / 'test_metrics.json')
    # a second run reuses every finished training
    res = run_tool([osp.join(REPO, 'tools/run_benchmark.py'), '--iters', '6',
                    '--methods', 'DAFormer', '--work-root', str(work),
                    '--cfg-options'] + SMOKE, cwd=tiny_benchmark, timeout=600)
    assert res.returncode == 0 and '[DAFormer] reusing' in res.stdout

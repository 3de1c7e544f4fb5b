"""tools/new_dataset.py end to end on a dataset the test draws: the configs it writes
resolve next to the worked example, the feature-distance classes come from the class
list, and the commands it prints count the RCS statistics, check the data, train a
short trial run, test, infer and export."""
import os
import os.path as osp
import shutil

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools/new_dataset.py')
QUIET = ['train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
         'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
         'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
         'custom_hooks=[]']


def _tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location('new_dataset', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def project(tmp_path, tiny_benchmark):
    """A working folder with the tiny benchmark as someone's data and a configs/
    tree whose _base_ is the repository's."""
    shutil.copytree(tiny_benchmark / 'data', tmp_path / 'data')
    (tmp_path / 'configs' / 'custom').mkdir(parents=True)
    os.symlink(osp.join(REPO, 'configs', '_base_'), tmp_path / 'configs' / '_base_')
    return tmp_path


ARGS = ['--classes', 'flat', 'construction', 'nature', 'sky', 'movable',
        '--label-ids', '0,1', '2,5,7', '8,9', '10', '11,13',
        '--thing-classes', 'movable', '--img-scale', '128', '64', '--crop', '64', '128']


def test_new_dataset_configs_and_commands_work(project, run_tool, monkeypatch, capsys):
    monkeypatch.chdir(project)
    out = str(project / 'configs' / 'custom')
    rc = _tool().main(['mine', '--source', 'data/procedural/source', '--target',
                       'data/procedural/target', '--out-dir', out] + ARGS)
    printed = capsys.readouterr().out
    assert rc == 0, printed
    config = 'configs/custom/daformer_mit_tiny_mine.py'
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    assert cfg.model.imnet_feature_dist_classes == [4]
    assert cfg.model.segmentor.decode_head.num_classes == 5
    assert cfg.train_dataloader.dataset.source.label_ids[1] == [2, 5, 7]
    commands = [ln.split() for ln in printed.splitlines() if ln.startswith('python ')]
    assert [c[1] for c in commands] == ['tools/convert_datasets/rcs_stats.py',
                                        'tools/train.py', 'tools/train.py', 'tools/train.py',
                                        'tools/test.py', 'tools/infer.py',
                                        'tools/export.py']
    # the RCS statistics and the data check as printed
    for cmd in commands[:2]:
        res = run_tool([osp.join(REPO, cmd[1])] + cmd[2:] + (
            ['--cfg-options'] + QUIET if cmd[1] == 'tools/train.py' else []),
            cwd=project)
        assert res.returncode == 0, res.stderr[-2000:]
    assert (project / 'data/procedural/source/sample_class_stats.json').is_file()
    # the trial run, shorter still, then test, infer and export of its checkpoint
    work = project / 'work_dirs' / 'trial'
    res = run_tool([osp.join(REPO, 'tools/train.py'), config, '--short', '2',
                    '--work-dir', str(work), '--cfg-options'] + QUIET, cwd=project)
    assert res.returncode == 0, res.stderr[-2000:]
    ckpt = str(work / 'iter_2.pth')
    res = run_tool([osp.join(REPO, 'tools/test.py'), config, ckpt, '--work-dir',
                    str(work / 'test'), '--cfg-options'] + QUIET, cwd=project)
    assert res.returncode == 0 and (work / 'test' / 'test_metrics.json').is_file()
    res = run_tool([osp.join(REPO, 'tools/infer.py'), config, ckpt,
                    'data/procedural/target/leftImg8bit/val', '--out', str(work / 'inf')],
                   cwd=project)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(list((work / 'inf' / 'masks').rglob('*.png'))) == 4
    res = run_tool([osp.join(REPO, 'tools/export.py'), config, ckpt, '--out-dir',
                    str(work / 'export'), '--verify'], cwd=project)
    assert res.returncode == 0 and 'export verification passed' in res.stdout


def test_wrong_arguments_are_one_line_and_write_nothing(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    out = str(project / 'configs' / 'custom')
    base = ['mine', '--source', 'data/procedural/source', '--target',
            'data/procedural/target', '--out-dir', out]
    for extra, message in ((['--classes', 'a', 'b', '--thing-classes', 'c'],
                            "--thing-classes ['c'] are not in --classes"),
                           (['--classes', 'a', 'b', '--palette', '1,2,3'],
                            '--palette has 1 colours for 2 classes'),
                           (['--classes', 'a', '--img-dir', 'images'],
                            'no image folder'),
                           (['--classes', 'a', '--out-dir', str(project / 'elsewhere')],
                            'its parent folder has no _base_ folder')):
        assert _tool().main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith('error:') and message in err and '\n' not in err
    assert os.listdir(out) == []

"""The tools turn bad config values, bad data, mismatched checkpoints and runs of
non-finite losses into one ``error:`` line (no traceback), leaving no work dir where
the mistake is visible before training."""
import os
import os.path as osp
import shutil

import cv2
import pytest
import torch

from tests.helpers.reliability import CONFIGS, FAST, REPO, schedule

TRAIN = osp.join(REPO, 'tools/train.py')
TEST = osp.join(REPO, 'tools/test.py')


def error_line(res):
    assert 'Traceback' not in res.stderr, res.stderr[-3000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith('error: ')]
    assert len(lines) == 1, res.stderr[-3000:]
    return lines[0]


@pytest.fixture
def bench(tmp_path, tiny_benchmark):
    """A private copy of the tiny benchmark to corrupt."""
    shutil.copytree(tiny_benchmark / 'data', tmp_path / 'data')
    return tmp_path


def _source_images(bench):
    return sorted(str(p.relative_to(bench)) for p in
                  (bench / 'data/procedural/source/leftImg8bit/train').rglob('*.png'))


def test_wrong_value_in_the_model_names_key_and_type(bench, run_tool):
    res = run_tool([TRAIN, CONFIGS['dida'], '--work-dir', str(bench / 'w'),
                    '--cfg-options', 'model.plugins.0.lambda_r=abc'] + FAST, cwd=bench)
    assert res.returncode == 2
    assert ("invalid config: model.plugins[0].lambda_r: DiDA expects a float (default "
            "5.0), got 'abc' (str)") in error_line(res)
    assert not osp.exists(bench / 'w')


def test_target_root_override_that_nothing_uses(bench, run_tool):
    res = run_tool([TRAIN, CONFIGS['daformer'], '--work-dir', str(bench / 'w'),
                    '--cfg-options', 'target_root=/data/other'], cwd=bench)
    assert res.returncode == 2
    line = error_line(res)
    assert 'target_root=/data/other changes nothing' in line
    assert 'train_dataloader.dataset.target.data_root=/data/other' in line
    assert not osp.exists(bench / 'w')


def test_check_data_finds_a_truncated_image_before_training(bench, run_tool):
    bad = _source_images(bench)[3]
    data = open(bench / bad, 'rb').read()
    open(bench / bad, 'wb').write(data[:len(data) // 3])
    res = run_tool([TRAIN, CONFIGS['source_only'], '--work-dir', str(bench / 'w'),
                    '--check-data', '--cfg-options'] + FAST, cwd=bench)
    assert res.returncode == 2
    assert f'error: {CONFIGS["source_only"]}: image {bad} is truncated' in error_line(res)
    assert 'checking 8 samples of train_dataloader.dataset' in res.stdout
    assert not osp.exists(bench / 'w')


def test_label_id_outside_the_table_stops_training_at_first_load(bench, run_tool):
    # every source label has the bad id, in a dataloader worker process
    for img in _source_images(bench):
        label = str(bench / img).replace('leftImg8bit', 'gtFine', 1).replace(
            '_leftImg8bit.png', '_gtFine_labelTrainIds.png')
        seg = cv2.imread(label, cv2.IMREAD_UNCHANGED)
        seg[0, 0] = 77
        cv2.imwrite(label, seg)
    res = run_tool([TRAIN, CONFIGS['source_only'], '--work-dir', str(bench / 'w'),
                    '--cfg-options'] + FAST + schedule(2) + [
                        'train_dataloader.num_workers=1'], cwd=bench)
    assert res.returncode == 2
    line = error_line(res)
    assert 'has id 77 outside the class table (ids 0-18, ignore 255)' in line
    assert '_gtFine_labelTrainIds.png' in line


def test_run_of_nonfinite_losses_stops_with_one_line(bench, run_tool):
    res = run_tool([TRAIN, CONFIGS['source_only'], '--work-dir', str(bench / 'w'),
                    '--cfg-options'] + FAST + schedule(8, ckpt_interval=1) + [
                        'optim_wrapper.optimizer.lr=1e30',
                        'default_hooks.nonfinite_loss.max_consecutive=2'], cwd=bench)
    assert res.returncode == 3
    line = error_line(res)
    assert 'training stopped: the loss was not finite in 2 iterations in a row' in line
    assert 'non-finite gradients, optimiser step skipped' in res.stdout + res.stderr
    last = open(bench / 'w' / 'last_checkpoint').read().strip()
    state = torch.load(last, map_location='cpu')['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_test_tool_refuses_a_mismatched_checkpoint(bench, run_tool):
    torch.save({'state_dict': {'backbone.foo': torch.zeros(1)}}, bench / 'bad.pth')
    res = run_tool([TEST, CONFIGS['dida'], str(bench / 'bad.pth'), '--work-dir',
                    str(bench / 't'), '--cfg-options'] + FAST, cwd=bench)
    assert res.returncode == 2
    line = error_line(res)
    assert 'does not match the model (DACS)' in line and '--non-strict' in line
    assert 'plain segmentor checkpoint for a UDA training config' in line
    assert not osp.exists(bench / 't' / 'test_metrics.json')
    os.remove(bench / 'bad.pth')


def test_resume_without_a_complete_checkpoint_is_one_line(bench, run_tool):
    work = bench / 'w'
    work.mkdir()
    for i in (2, 4):  # both cut short (a copy interrupted, a full disk)
        torch.save({'state_dict': {'w': torch.zeros(1000)}}, work / f'iter_{i}.pth')
        data = (work / f'iter_{i}.pth').read_bytes()
        (work / f'iter_{i}.pth').write_bytes(data[:len(data) // 2])
    (work / 'last_checkpoint').write_text(str(work / 'iter_4.pth'))
    res = run_tool([TRAIN, CONFIGS['source_only'], '--work-dir', str(work), '--resume',
                    '--cfg-options'] + FAST, cwd=bench)
    assert res.returncode == 2
    line = error_line(res)
    assert (f'cannot resume: last_checkpoint names {work}/iter_4.pth, but it is '
            'truncated') in line
    assert 'iter_2.pth skipped (it is truncated' in line
    assert 'start from iteration 0 without --resume' in line
    assert '--cfg-options load_from=PATH' in line


def test_a_bad_load_from_is_one_line(bench, run_tool):
    """load_from (a new run from a checkpoint's weights): a missing or truncated file
    is refused before anything is written, a checkpoint of another model when the
    run loads it; one line, exit 2, both."""
    missing = bench / 'nowhere.pth'
    res = run_tool([TRAIN, CONFIGS['dida'], '--work-dir', str(bench / 'w1'),
                    '--cfg-options', f'load_from={missing}'] + FAST, cwd=bench)
    assert res.returncode == 2
    assert f'load_from: checkpoint {missing} cannot be used: it does not exist' in (
        error_line(res))
    assert not osp.exists(bench / 'w1')
    torch.save({'state_dict': {'backbone.foo': torch.zeros(1)}}, bench / 'other.pth')
    res = run_tool([TRAIN, CONFIGS['dida'], '--work-dir', str(bench / 'w2'),
                    '--cfg-options', f'load_from={bench / "other.pth"}'] + FAST,
                   cwd=bench)
    assert res.returncode == 2
    assert error_line(res).startswith(f"error: {CONFIGS['dida']}: load_from: ")
    assert not list((bench / 'w2').glob('iter_*.pth'))

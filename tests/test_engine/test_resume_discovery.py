"""mmseg_dida.engine.resume.discovery: complete checkpoints told from truncated ones;
--resume falls back to the newest complete one."""
import os

import torch

from mmseg_dida.engine.resume import find_resume_checkpoint, resume_candidates
from mmseg_dida.utils.atomic_files import atomic_torch_save, checkpoint_problem


def test_checkpoint_problem_detects_truncation(tmp_path):
    path = tmp_path / 'c.pth'
    atomic_torch_save({'w': torch.randn(1000)}, str(path))
    assert checkpoint_problem(str(path)) is None
    data = path.read_bytes()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
    assert 'truncated' in checkpoint_problem(str(tmp_path / 'cut.pth'))
    assert 'does not exist' in checkpoint_problem(str(tmp_path / 'none.pth'))
    assert 'not a file' in checkpoint_problem(str(tmp_path))


def test_resume_falls_back_to_the_newest_complete_checkpoint(tmp_path):
    assert resume_candidates(str(tmp_path)) == []
    for i in (2, 4, 6):
        atomic_torch_save({'i': i}, str(tmp_path / f'iter_{i}.pth'))
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_6.pth'))
    assert resume_candidates(str(tmp_path)) == [
        str(tmp_path / n) for n in ('last_checkpoint', 'iter_6.pth', 'iter_4.pth',
                                    'iter_2.pth')]
    path, note = find_resume_checkpoint(str(tmp_path))
    assert path == str(tmp_path / 'iter_6.pth') and note.startswith('resuming from')
    # iter_6 half-written (an old mmengine run), iter_4 deleted
    data = (tmp_path / 'iter_6.pth').read_bytes()
    (tmp_path / 'iter_6.pth').write_bytes(data[:100])
    os.remove(tmp_path / 'iter_4.pth')
    path, note = find_resume_checkpoint(str(tmp_path))
    assert path == str(tmp_path / 'iter_2.pth')
    assert 'iter_6.pth, but it is truncated' in note
    assert 'newest complete checkpoint' in note
    # last_checkpoint names a deleted file
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_8.pth'))
    path, note = find_resume_checkpoint(str(tmp_path))
    assert path == str(tmp_path / 'iter_2.pth') and 'does not exist' in note
    os.remove(tmp_path / 'iter_2.pth')
    path, note = find_resume_checkpoint(str(tmp_path))
    assert path is None and 'no complete checkpoint' in note
    path, note = find_resume_checkpoint(str(tmp_path / 'none'))
    assert path is None and 'does not exist' in note

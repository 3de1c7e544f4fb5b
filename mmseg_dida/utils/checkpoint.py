"""Checkpoint files: written completely or not at all, found again, loaded strictly.

Writing (every file a tool of this project writes goes through these):

* :func:`atomic_write` -- a context manager that yields a file object for a temporary
  file in the destination folder (``.<name>.tmp-<pid>-<random>``); on success the
  data are flushed and fsync'ed, the file is renamed onto ``path`` (``os.replace``,
  atomic on POSIX) and the folder entry is fsync'ed. On an exception the temporary
  file is removed. A process killed at any moment leaves either the old file, the
  new file, or a stray temporary file that nothing ever reads (and
  :func:`remove_stale_temporaries` deletes).
* :func:`atomic_torch_save`, :func:`atomic_write_text` -- ``torch.save`` / text
  through :func:`atomic_write`.

Finding (``tools/train.py --resume``):

* :func:`checkpoint_problem` -- why a file is not a complete checkpoint (missing,
  unreadable, truncated), or None. torch writes zip archives whose central directory
  is the last thing written, so a truncated file never opens as a zip archive.
* :func:`find_resume_checkpoint` -- the file ``last_checkpoint`` names when it is
  complete, else the newest complete ``iter_*.pth``/``epoch_*.pth`` of the work dir,
  with a sentence saying what was skipped and why; :func:`resume_candidates` -- the
  files it looked at (none: nothing to resume, a first start).

Loading (``tools/test.py``, ``tools/export.py``, ``tools/infer.py``):

* :func:`load_model_weights` -- load a checkpoint into a model *strictly*: every
  tensor of the model comes from the checkpoint with the same shape, or
  :class:`CheckpointMismatchError` is raised with one line (how many keys are
  missing/unexpected/of another shape, the first few, and the likely cause). Two
  layouts are mapped instead of refused:

  - a UDA training checkpoint (``student.*``, ``teacher.*``, plug-ins, ...) loaded
    into a plain segmentor (e.g. the deploy config of that run): the student's
    tensors are taken (a backbone wrapper such as DiDA's diffusion encoder keeps the
    wrapped network under ``backbone.backbone.*``, which maps to ``backbone.*``);
    training-only tensors (teacher, g', h', ImageNet model) are dropped;
  - a plain segmentor checkpoint (e.g. ``deploy.pth``) loaded into a UDA model (its
    training config): it must cover every tensor of the deployable segmentor, which
    is loaded into the student; the training-only parts keep their initial values
    (they are not used at inference).

  With ``strict=False`` whatever matches is loaded and the mismatch is returned
  (and logged as one warning line) instead of raised.
"""
import contextlib
import copy
import os
import os.path as osp
import re
import secrets
import zipfile
from dataclasses import dataclass, field
from typing import IO, Dict, Iterator, List, Optional, Tuple, Union

import torch
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from torch import nn

__all__ = [
    'atomic_write', 'atomic_torch_save', 'atomic_write_text', 'remove_stale_temporaries',
    'checkpoint_problem', 'resume_candidates', 'find_resume_checkpoint',
    'CheckpointReadError',
    'CheckpointMismatchError', 'LoadReport', 'read_state_dict', 'load_model_weights',
    'strip_pretrained_init', 'build_model_from_checkpoint'
]

_TMP_MARK = '.tmp-'
_TMP_RE = re.compile(r'^\..+\.tmp-\d+-[0-9a-f]+$')
_RUNNER_CKPT_RE = re.compile(r'^(iter|epoch)_(\d+)\.pth$')
# A backbone wrapper keeps the wrapped network under this name (DiDA's
# DiffusionEncoder: the segmentor's ``backbone.X`` is the training model's
# ``backbone.backbone.X``).
_WRAPPED = ('backbone.', 'backbone.backbone.')


# ------------------------------------------------------------------- writing
def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. not permitted on this platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'wb') -> Iterator[IO]:
    """Yield a file object whose content replaces ``path`` only once it is complete
    (temporary file in the same folder, fsync, ``os.replace``, fsync of the folder)."""
    if mode not in ('w', 'wb'):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    folder = osp.dirname(osp.abspath(path))
    tmp = osp.join(folder, f'.{osp.basename(path)}{_TMP_MARK}{os.getpid()}-'
                   f'{secrets.token_hex(4)}')
    f = open(tmp, mode)
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException:
        f.close()
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def atomic_torch_save(obj, path: str) -> None:
    """``torch.save(obj, path)``, complete or absent."""
    with atomic_write(path, 'wb') as f:
        torch.save(obj, f)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path``, complete or absent."""
    with atomic_write(path, 'w') as f:
        f.write(text)


def remove_stale_temporaries(folder: str) -> List[str]:
    """Delete the temporary files :func:`atomic_write` left in ``folder`` when its
    process was killed; return their paths. Call it when no other process writes
    there (before training starts)."""
    removed = []
    if not osp.isdir(folder):
        return removed
    for name in os.listdir(folder):
        if _TMP_RE.match(name):
            path = osp.join(folder, name)
            with contextlib.suppress(OSError):
                os.remove(path)
                removed.append(path)
    return removed


# ------------------------------------------------------------------- finding
def checkpoint_problem(path: str) -> Optional[str]:
    """None when ``path`` is a complete torch checkpoint, else what is wrong."""
    if not osp.exists(path):
        return 'it does not exist'
    if not osp.isfile(path):
        return 'it is not a file'
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        size = osp.getsize(path)
        return f'it is truncated or not a torch checkpoint ({size} bytes, no zip end ' \
               'record)'
    except OSError as e:
        return f'it cannot be read ({e.strerror or e})'
    if not any(n.endswith('data.pkl') for n in names):
        return 'it is a zip archive without torch data (data.pkl)'
    return None


def _runner_checkpoints(work_dir: str) -> List[Tuple[int, str]]:
    found = []
    for name in os.listdir(work_dir):
        m = _RUNNER_CKPT_RE.match(name)
        if m:
            found.append((int(m.group(2)), osp.join(work_dir, name)))
    return sorted(found, reverse=True)


def resume_candidates(work_dir: str) -> List[str]:
    """The files of ``work_dir`` that ``--resume`` looks at: ``last_checkpoint`` and
    the runner's ``iter_<n>.pth`` / ``epoch_<n>.pth``, complete or not."""
    if not osp.isdir(work_dir):
        return []
    last = osp.join(work_dir, 'last_checkpoint')
    return ([last] if osp.isfile(last) else []) + [p for _, p in
                                                   _runner_checkpoints(work_dir)]


def find_resume_checkpoint(work_dir: str) -> Tuple[Optional[str], str]:
    """The checkpoint ``--resume`` continues from, and a sentence saying which.

    The file ``<work_dir>/last_checkpoint`` names, if it is complete; otherwise the
    newest complete ``iter_<n>.pth`` / ``epoch_<n>.pth`` of the work dir (the
    sentence then says which file was skipped and why). ``(None, sentence)`` when
    there is none."""
    if not osp.isdir(work_dir):
        return None, f'no checkpoint to resume from: {work_dir} does not exist'
    named = None
    last_file = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last_file):
        with open(last_file) as f:
            named = f.read().strip()
        if named and not osp.isabs(named):
            named = osp.join(work_dir, named)
        if named:
            problem = checkpoint_problem(named)
            if problem is None:
                return named, f'resuming from {named}'
            skipped = f'last_checkpoint names {named}, but {problem}'
        else:
            skipped = 'last_checkpoint is empty'
    else:
        skipped = 'there is no last_checkpoint file'
    for _, path in _runner_checkpoints(work_dir):
        if path == named:
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            return path, (f'{skipped}; resuming from the newest complete checkpoint '
                          f'{path}')
        skipped += f'; {osp.basename(path)} skipped ({problem})'
    return None, f'{skipped}; no complete checkpoint in {work_dir}'


# ------------------------------------------------------------------- loading
class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read (missing, truncated, not a checkpoint)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint whose tensors do not match the model; the message is one line."""


@dataclass
class LoadReport:
    """What :func:`load_model_weights` did.

    Attributes:
        layout: 'same' (names as in the model), 'uda->segmentor' (a UDA training
            checkpoint's student loaded into a plain segmentor) or 'segmentor->uda'
            (a plain segmentor checkpoint loaded into a UDA model's student).
        loaded: Number of tensors loaded.
        missing, unexpected, mismatched: Model keys without a tensor, checkpoint keys
            not used, keys of different shape (``name: ckpt shape vs model shape``).
        dropped: Checkpoint keys left out on purpose by the layout mapping
            (training-only parts).
        meta: The checkpoint's ``meta`` dict ({} if none).
    """
    layout: str = 'same'
    loaded: int = 0
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 3) -> str:
        parts = []
        for name, keys in (('missing', self.missing), ('unexpected', self.unexpected),
                           ('of another shape', self.mismatched)):
            if keys:
                more = f', ... {len(keys) - limit} more' if len(keys) > limit else ''
                parts.append(f"{len(keys)} {name} ({', '.join(keys[:limit])}{more})")
        return '; '.join(parts) or 'all keys match'


def read_state_dict(checkpoint: Union[str, dict], map_location='cpu'
                    ) -> Tuple[Dict[str, torch.Tensor], dict]:
    """(state_dict, meta) of a checkpoint file or loaded checkpoint dict. The
    ``module.`` prefix of data-parallel wrappers is removed."""
    if isinstance(checkpoint, str):
        problem = checkpoint_problem(checkpoint)
        if problem is not None:
            raise CheckpointReadError(f'checkpoint {checkpoint} cannot be used: {problem}')
        try:
            # safe loading (runner checkpoints: see mmseg_dida.compat)
            checkpoint = torch.load(checkpoint, map_location=map_location)
        except Exception as e:  # a corrupt archive member, an unknown pickled class
            raise CheckpointReadError(f'checkpoint {checkpoint} cannot be read: '
                                      f'{type(e).__name__}: {str(e).splitlines()[0]}'
                                      ) from e
    if not isinstance(checkpoint, dict):
        raise CheckpointReadError(f'a checkpoint is a dict, got {type(checkpoint).__name__}')
    meta = checkpoint.get('meta') if isinstance(checkpoint.get('meta'), dict) else {}
    state = checkpoint.get('state_dict', checkpoint.get('model', checkpoint))
    if not isinstance(state, dict):
        raise CheckpointReadError('the checkpoint has no state_dict')
    state = {(k[7:] if k.startswith('module.') else k): v for k, v in state.items()
             if isinstance(v, torch.Tensor)}
    return state, meta


def _compare(expected: Dict[str, torch.Size], state: Dict[str, torch.Tensor]
             ) -> Tuple[List[str], List[str], List[str]]:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f'{k}: {tuple(state[k].shape)} vs {tuple(s)}'
                  for k, s in expected.items() if k in state and state[k].shape != s]
    return missing, unexpected, mismatched


def _unwrap_name(key: str, expected: Dict[str, torch.Size]) -> str:
    """``backbone.backbone.X`` -> ``backbone.X`` when the model has the latter."""
    plain, wrapped = _WRAPPED
    if key.startswith(wrapped) and key not in expected:
        short = plain + key[len(wrapped):]
        if short in expected:
            return short
    return key


def _student_to_segmentor(state, expected) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """A UDA training state's student tensors under the plain segmentor's names."""
    mapped, dropped = {}, []
    for k, v in state.items():
        if not k.startswith('student.'):
            dropped.append(k)
            continue
        name = _unwrap_name(k[len('student.'):], expected)
        if name in expected:
            mapped[name] = v
        else:
            dropped.append(k)
    return mapped, dropped


def _deployable_names(model: nn.Module) -> Dict[str, torch.Size]:
    """Names and shapes of the deployable segmentor of a UDA model (its student
    without training-only parts), from the project's deployment function."""
    from ..models.uda.dida import deploy_segmentor
    return {k: v.shape for k, v in deploy_segmentor(model).state_dict().items()}


def _segmentor_into_student(model: nn.Module, state
                            ) -> Tuple[Dict[str, torch.Tensor], List[str], List[str]]:
    """A plain segmentor state under the UDA model's student names; returns
    (mapped state, deployable keys missing in the checkpoint, unused keys)."""
    student_names = {k: v.shape for k, v in model.student.state_dict().items()}
    deployable = _deployable_names(model)
    plain, wrapped = _WRAPPED
    mapped, unused = {}, []
    for k, v in state.items():
        if k not in deployable:
            unused.append(k)
            continue
        name = k
        if name not in student_names and name.startswith(plain):
            name = wrapped + name[len(plain):]
        mapped['student.' + name] = v
    missing = [k for k in deployable if k not in state]
    return mapped, missing, unused


def _likely_cause(model_keys, ckpt_keys, mismatched) -> str:
    model_uda = any(k.startswith('student.') for k in model_keys)
    ckpt_uda = any(k.startswith('student.') for k in ckpt_keys)
    if ckpt_uda and not model_uda:
        return ('a UDA training checkpoint for a plain segmentor config of another '
                'architecture (the keys above compare its student with this model)')
    if model_uda and not ckpt_uda:
        return ('a plain segmentor checkpoint for a UDA training config of another '
                "architecture (the keys above compare it with the UDA model's "
                'deployable student)')
    if mismatched and not set(model_keys) ^ set(ckpt_keys):
        return 'the same layout with other sizes (num_classes or widths differ)'
    return 'a checkpoint of another architecture or config'


def strip_pretrained_init(cfg) -> None:
    """Remove every ``init_cfg`` and null every ``pretrained`` in a model config, in
    place (nested dicts and lists): a model whose weights come from a checkpoint
    must not need the ImageNet files it was initialised from."""
    if isinstance(cfg, dict):
        cfg.pop('init_cfg', None)
        if 'pretrained' in cfg:
            cfg['pretrained'] = None
        for v in cfg.values():
            strip_pretrained_init(v)
    elif isinstance(cfg, list):
        for v in cfg:
            strip_pretrained_init(v)


def load_model_weights(model: nn.Module, checkpoint: Union[str, dict], *,
                       strict: bool = True, map_location='cpu',
                       logger=None) -> LoadReport:
    """Load ``checkpoint`` (a path or a loaded dict) into ``model``.

    Args:
        model: The model (an mmseg segmentor or a UDA model; a data-parallel wrapper
            or a test-time-augmentation model is unwrapped through ``.module``).
        checkpoint: Path of a ``.pth`` file or a loaded checkpoint dict.
        strict: Raise :class:`CheckpointMismatchError` unless every tensor of the
            model (of the deployable student, for a plain checkpoint in a UDA
            model) comes from the checkpoint with the same shape. False: load what
            matches and report the rest.
        map_location: As ``torch.load``.
        logger: Optional logger (or ``print_log`` ``logger=`` value) for one info
            line about a mapped layout and one warning line in non-strict mode.

    Returns:
        :class:`LoadReport`.

    Raises:
        CheckpointReadError: the file is missing, truncated or not a checkpoint.
        CheckpointMismatchError: (strict) the keys do not match; one line.
    """
    from mmengine.logging import print_log
    from mmengine.model import BaseTTAModel, is_model_wrapper
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    state, meta = read_state_dict(checkpoint, map_location)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    report = LoadReport(meta=meta)
    # Same names: loaded through load_state_dict, so that the model's own
    # load hooks (e.g. an older EMA-teacher layout) take part.
    mismatched = [f'{k}: {tuple(v.shape)} vs {tuple(expected[k])}'
                  for k, v in state.items() if k in expected and v.shape != expected[k]]
    same = {k: v for k, v in state.items() if k not in expected or v.shape == expected[k]}
    result = model.load_state_dict(same, strict=False)
    bad_shape = {m.split(':')[0] for m in mismatched}
    missing = [k for k in result.missing_keys if k not in bad_shape]
    unexpected = list(result.unexpected_keys)
    report.loaded = len(same) - len(unexpected)
    partial = None
    if missing or unexpected:
        model_uda = hasattr(model, 'student')
        ckpt_uda = any(k.startswith('student.') for k in state)
        mapped = None
        if ckpt_uda and not model_uda:
            candidate, dropped = _student_to_segmentor(state, expected)
            m2, _, mm2 = _compare(expected, candidate)
            if not m2 and not mm2:
                mapped, report.layout, report.dropped = candidate, 'uda->segmentor', dropped
            else:  # report what the student lacks, not the raw key lists
                missing, unexpected, mismatched = m2, [], mm2
                partial = candidate
        elif model_uda and not ckpt_uda:
            candidate, m2, unused = _segmentor_into_student(model, state)
            mm2 = [f'{k}: {tuple(v.shape)} vs {tuple(expected[k])}'
                   for k, v in candidate.items() if expected.get(k) != v.shape]
            if not m2 and not unused and not mm2:
                mapped, report.layout = candidate, 'segmentor->uda'
            else:
                missing, unexpected, mismatched = m2, unused, mm2
                partial = candidate
        if mapped is not None:
            result = model.load_state_dict(mapped, strict=False)
            report.loaded = len(mapped)
            missing, unexpected, mismatched = [], [], []
    report.missing, report.unexpected, report.mismatched = missing, unexpected, mismatched
    if not report.exact:
        where = checkpoint if isinstance(checkpoint, str) else 'the checkpoint'
        line = (f'{where} does not match the model ({type(model).__name__}): '
                f'{report.summary()}; likely cause: '
                f'{_likely_cause(expected, state, mismatched)}')
        if strict:
            raise CheckpointMismatchError(
                line + '; pass --non-strict to load the matching tensors anyway')
        print_log(f'non-strict loading: {line}', logger=logger or 'current',
                  level=30)
        if partial:  # the mapped layout's matching tensors
            partial = {k: v for k, v in partial.items() if expected.get(k) == v.shape}
            model.load_state_dict(partial, strict=False)
            report.loaded = len(partial)
    if report.layout == 'segmentor->uda':
        # the teacher and the training-only parts of the student keep their values
        print_log(f'loaded a plain segmentor checkpoint into the student of '
                  f'{type(model).__name__} ({report.loaded} tensors); its training-only '
                  f'parts ({len(result.missing_keys)} tensors: teacher, ...) are not in '
                  'the checkpoint and are not used at inference', logger=logger or
                  'current')
    elif report.layout == 'uda->segmentor':
        print_log(f'loaded the student of a UDA training checkpoint '
                  f'({report.loaded} tensors; {len(report.dropped)} training-only '
                  'tensors dropped)', logger=logger or 'current')
    return report


def build_model_from_checkpoint(cfg, checkpoint: Union[str, dict], *,
                                strict: bool = True) -> Tuple[nn.Module, LoadReport]:
    """The model of ``cfg`` (a UDA model or a plain segmentor) built without its
    pretrained initialisation (:func:`strip_pretrained_init`) and filled from
    ``checkpoint`` by :func:`load_model_weights`; returns the model (train mode, on
    the CPU) and the load report. ``cfg`` is not modified."""
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model_cfg = cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else cfg.model
    model_cfg = ConfigDict(copy.deepcopy(model_cfg))
    strip_pretrained_init(model_cfg)
    model = MODELS.build(model_cfg)
    return model, load_model_weights(model, checkpoint, strict=strict)

"""Models filled from checkpoints, strictly (``tools/test.py``, ``tools/export.py``,
``tools/infer.py``).

* :func:`load_model_weights` -- load a checkpoint into a model *strictly*: every
  tensor of the model comes from the checkpoint with the same shape, or
  :class:`~mmseg_dida.deploy.state_mapping.CheckpointMismatchError` is raised with one
  line (how many keys are missing/unexpected/of another shape, the first few, and
  the likely cause). Two layouts are mapped instead of refused
  (:mod:`mmseg_dida.deploy.state_mapping`):

  - a UDA training checkpoint (``student.*``, ``teacher.*``, plug-ins, ...) loaded
    into a plain segmentor (e.g. the deploy config of that run): the student's
    tensors are taken under their deployed names; training-only tensors (teacher,
    g', h', ImageNet model) are dropped;
  - a plain segmentor checkpoint (e.g. ``deploy.pth``) loaded into a UDA model (its
    training config): it must cover every tensor of the deployable segmentor, which
    is loaded into the student; the training-only parts keep their initial values
    (they are not used at inference).

  With ``strict=False`` whatever matches is loaded and the mismatch is returned
  (and logged as one warning line) instead of raised.
* :func:`build_model_from_checkpoint` -- the model of a config, built without its
  pretrained initialisation (:func:`strip_pretrained_init`) and filled by
  :func:`load_model_weights`.
"""
import copy
from typing import Tuple, Union

from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from torch import nn

from .core import deployed_key_map, training_segmentor
from .state_mapping import (
    STUDENT,
    CheckpointMismatchError,
    LoadReport,
    compare,
    likely_cause,
    read_state_dict,
    segmentor_into_student,
    student_to_segmentor,
)

__all__ = ['load_model_weights', 'strip_pretrained_init', 'build_model_from_checkpoint']


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
        :class:`~mmseg_dida.deploy.state_mapping.LoadReport`.

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
    model_uda = training_segmentor(model) is not model
    ckpt_uda = any(k.startswith(STUDENT) for k in state)
    # a UDA checkpoint whose student has other names (another method's wrappers):
    # nothing of it is loaded under its own names (its teacher, iteration counter and
    # plug-ins belong to another run), only its student through the mapping below
    other_student = model_uda and ckpt_uda and (
        {k for k in state if k.startswith(STUDENT)}
        != {k for k in expected if k.startswith(STUDENT)})
    result = model.load_state_dict({} if other_student else same, strict=False)
    bad_shape = {m.split(':')[0] for m in mismatched}
    missing = [k for k in result.missing_keys if k not in bad_shape]
    unexpected = list(state) if other_student else list(result.unexpected_keys)
    report.loaded = 0 if other_student else len(same) - len(unexpected)
    partial = None
    if missing or unexpected:
        mapped = None
        if ckpt_uda and not model_uda:
            candidate, dropped = student_to_segmentor(state, expected)
            m2, _, mm2 = compare(expected, candidate)
            if not m2 and not mm2:
                mapped, report.layout, report.dropped = candidate, 'uda->segmentor', dropped
            else:  # report what the student lacks, not the raw key lists
                missing, unexpected, mismatched = m2, [], mm2
                partial = candidate
        elif model_uda and ckpt_uda:  # another method's run: its student only
            # the checkpoint's student under the deployed names of this model's
            # student, then under this model's student names
            deployed = {dep: expected[STUDENT + k] for k, dep in
                        deployed_key_map(training_segmentor(model)).items()
                        if dep is not None and STUDENT + k in expected}
            student, dropped = student_to_segmentor(state, deployed)
            candidate, m2, unused = segmentor_into_student(model, student)
            mm2 = [f'{k}: {tuple(v.shape)} vs {tuple(expected[k])}'
                   for k, v in candidate.items() if expected.get(k) != v.shape]
            if not m2 and not mm2:
                mapped, report.layout, report.dropped = candidate, 'uda->uda', dropped
            else:  # what this model's student lacks, not the raw key lists
                missing, unexpected, mismatched = m2, unused, mm2
                partial = candidate
        elif model_uda and not ckpt_uda:
            candidate, m2, unused = segmentor_into_student(model, state)
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
                f'{likely_cause(expected, state, mismatched)}')
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
    elif report.layout == 'uda->uda':
        print_log(f'loaded the student of another UDA training checkpoint into the '
                  f'student of {type(model).__name__} ({report.loaded} tensors; its '
                  f'teacher, iteration counter and plug-ins, {len(report.dropped)} '
                  'tensors, left out)', logger=logger or 'current')
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

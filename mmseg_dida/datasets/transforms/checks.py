"""Bad data caught with the file named, the first time a sample is loaded.

:func:`insert_data_checks` adds two transforms to every pipeline of a config
(``tools/train.py`` does it), and :func:`scan_dataset` runs them over a whole dataset
(``tools/train.py --check-data``):

* :class:`CheckFiles`, before ``LoadImageFromFile``: the image (and label) file is
  readable and complete -- a PNG ends with its ``IEND`` chunk, a JPEG with its ``EOI``
  marker (a truncated file decodes to a partly grey image or fails deep in the
  decoder);
* :class:`CheckSegLabel`, after ``LoadAnnotations``: the label has the image's size
  and only ids of the class table (``0 .. num_classes - 1``) or the ignore index.

Each file is checked once per process (the first pass over a sample); a problem is a
:class:`DataError` with one line naming the file and what is wrong.
"""
import os
import os.path as osp
from typing import Iterator, List, Optional, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS

__all__ = ['DataError', 'CheckFiles', 'CheckSegLabel', 'insert_data_checks',
           'scan_dataset', 'file_problem', 'data_error_line', 'dataset_nodes']

_PNG = b'\x89PNG\r\n\x1a\n'
_PNG_END = b'IEND\xaeB`\x82'
_JPEG = b'\xff\xd8'
_JPEG_END = b'\xff\xd9'


class DataError(ValueError):
    """A sample's file is unreadable, incomplete or inconsistent (one line)."""


def data_error_line(error: DataError) -> str:
    """The original one-line message of a :class:`DataError`, also when a
    dataloader worker re-raised it with its traceback in the message."""
    lines = [ln for ln in str(error).strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else ''
    marker = 'DataError: '
    return line.split(marker, 1)[1] if marker in line else line


def file_problem(path: str) -> Optional[str]:
    """What is wrong with an image/label file (None: readable, complete as far as
    its format shows)."""
    try:
        size = os.path.getsize(path)
        with open(path, 'rb') as f:
            head = f.read(16)
            f.seek(max(0, size - 256))
            tail = f.read()
    except OSError as e:
        return f'cannot be read ({e.strerror or e})'
    if size == 0:
        return 'is empty (0 bytes)'
    if head.startswith(_PNG) and not tail.endswith(_PNG_END):
        return f'is truncated ({size} bytes, no PNG end chunk IEND)'
    if head.startswith(_JPEG) and _JPEG_END not in tail:
        return f'is truncated ({size} bytes, no JPEG end marker)'
    return None


class _FirstPass(BaseTransform):

    def __init__(self):
        self._seen = set()

    def _first_time(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


@TRANSFORMS.register_module()
class CheckFiles(_FirstPass):
    """Raise :class:`DataError` when a sample's image (or label) file is unreadable,
    empty or truncated. Put before ``LoadImageFromFile``."""

    def transform(self, results: dict) -> dict:
        for key, what in (('img_path', 'image'), ('seg_map_path', 'label')):
            path = results.get(key)
            if path and self._first_time(path):
                problem = file_problem(path)
                if problem is not None:
                    raise DataError(f'{what} {path} {problem}')
        return results


@TRANSFORMS.register_module()
class CheckSegLabel(_FirstPass):
    """Raise :class:`DataError` when a loaded label map differs in size from its
    image or holds an id outside the class table. Put after ``LoadAnnotations``.

    Args:
        num_classes: Size of the class table (ids ``0 .. num_classes - 1``).
        ignore_index: The id of unlabelled pixels. Default 255.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f'CheckSegLabel: num_classes must be an int >= 1, got '
                             f'{num_classes!r}')
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        label = results.get('gt_seg_map')
        path = results.get('seg_map_path') or '?'
        if label is None or not self._first_time(path):
            return results
        # The image file's own size: ``ori_shape`` as LoadImageFromFile read it (a
        # pipeline may resize the image before loading the label, e.g. HRDA's
        # high-resolution test pipeline, whose labels stay at the file's size).
        shape = results.get('ori_shape')
        if shape is None and results.get('img') is not None:
            shape = results['img'].shape
        if shape is not None and tuple(label.shape[:2]) != tuple(shape[:2]):
            raise DataError(
                f'label {path} is {label.shape[1]}x{label.shape[0]} but its image '
                f"{results.get('img_path')} is {shape[1]}x{shape[0]} (w x h)")
        ids = np.unique(label)
        bad = ids[((ids < 0) | (ids >= self.num_classes)) & (ids != self.ignore_index)]
        if bad.size:
            shown = ', '.join(str(int(i)) for i in bad[:5])
            raise DataError(
                f'label {path} has id {shown} outside the class table (ids 0-'
                f'{self.num_classes - 1}, ignore {self.ignore_index}); labels must be '
                'train ids (see data/README.md, tools/convert_datasets)')
        return results


def _type_name(t) -> str:
    return t if isinstance(t, str) else getattr(t, '__name__', str(t))


def _leaf_datasets(node, path) -> Iterator[Tuple[str, dict]]:
    """Config nodes of datasets that have a pipeline."""
    if isinstance(node, dict):
        if isinstance(node.get('pipeline'), list):
            yield path, node
        for key in ('source', 'target', 'dataset'):
            yield from _leaf_datasets(node.get(key), f'{path}.{key}')
        for i, d in enumerate(node.get('datasets') or []):
            yield from _leaf_datasets(d, f'{path}.datasets[{i}]')


def dataset_nodes(cfg) -> List[Tuple[str, dict]]:
    """(config path, node) of every dataset with a pipeline in the dataloaders of
    ``cfg`` (train, val, test and the multi-dataset loops' extra ones)."""
    out = []
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if isinstance(loader, dict):
            out += _leaf_datasets(loader.get('dataset'), f'{key}.dataset')
    for key in ('val_cfg', 'test_cfg'):
        for name, extra in ((cfg.get(key) or {}).get('extra') or {}).items():
            loader = extra.get('dataloader') if isinstance(extra, dict) else None
            if isinstance(loader, dict):
                out += _leaf_datasets(loader.get('dataset'),
                                      f'{key}.extra.{name}.dataloader.dataset')
    seen, unique = set(), []
    for path, node in out:  # a dataset config shared by two loaders: once
        if id(node) not in seen:
            seen.add(id(node))
            unique.append((path, node))
    return unique


def _num_classes(node) -> Optional[int]:
    from mmseg.registry import DATASETS
    classes = (node.get('metainfo') or {}).get('classes')
    if classes is None:
        cls = DATASETS.get(node['type']) if isinstance(node.get('type'), str) else \
            node.get('type')
        classes = getattr(cls, 'METAINFO', {}).get('classes')
    return None if classes is None else len(classes)


def insert_data_checks(cfg) -> int:
    """Insert :class:`CheckFiles` before each ``LoadImageFromFile`` and
    :class:`CheckSegLabel` after each ``LoadAnnotations`` of every dataset pipeline
    of ``cfg`` (in place; idempotent). Returns the number of pipelines changed."""
    changed = 0
    for _, node in dataset_nodes(cfg):
        pipeline = node['pipeline']
        names = [_type_name(t.get('type')) for t in pipeline if isinstance(t, dict)]
        if 'CheckFiles' in names:
            continue
        out = []
        for t in pipeline:
            name = _type_name(t.get('type')) if isinstance(t, dict) else ''
            if name.endswith('LoadImageFromFile'):
                out.append(dict(type='CheckFiles'))
            out.append(t)
            num_classes = _num_classes(node)
            if name.endswith('LoadAnnotations') and num_classes:
                out.append(dict(type='CheckSegLabel', num_classes=num_classes,
                                ignore_index=node.get('ignore_index', 255)))
        node['pipeline'] = out
        changed += 1
    return changed


def scan_dataset(node: dict, path: str = 'dataset', progress: bool = True,
                 sample: int = 0) -> int:
    """Check every sample of the dataset config ``node`` (files complete, labels of
    the image's size and in the class table), with a progress bar; raise
    :class:`DataError` at the first problem. ``sample`` > 0 checks that many samples
    spread evenly over the dataset instead, silently (the check every training does
    before it starts). Returns the number of samples checked."""
    from mmengine.registry import DefaultScope
    from mmengine.utils import ProgressBar
    from mmseg.registry import DATASETS
    node = dict(node)
    node['pipeline'] = [t for t in node['pipeline'] if isinstance(t, dict) and _type_name(
        t.get('type')).endswith(('LoadImageFromFile', 'LoadAnnotations'))]
    insert_data_checks(dict(train_dataloader=dict(dataset=node)))
    # the dataset's own pipeline: a dataset may add steps to it (CustomSegDataset maps
    # raw label ids to train ids right after LoadAnnotations)
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(node)
    pipeline = dataset.pipeline.transforms
    n = len(dataset)
    indices = range(n)
    if sample > 0:
        indices = sorted({int(i) for i in np.linspace(0, n - 1, min(sample, n))}) \
            if n else []
        progress = False
    elif progress:
        root = osp.normpath(str(node.get('data_root', '')))
        print(f'checking {n} samples of {path} ({root})', flush=True)
    bar = ProgressBar(len(indices)) if progress and indices else None
    try:
        for i in indices:
            results = dict(dataset.get_data_info(i))
            try:
                for t in pipeline:
                    results = t(results)
            except DataError:
                raise
            except Exception as e:  # the decoder's own error
                msg = str(e).strip().splitlines()
                raise DataError(f"image {results.get('img_path')} or its label cannot "
                                f"be decoded ({type(e).__name__}: "
                                f"{msg[0] if msg else ''})") from e
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:  # end the bar's line, also before an error line
            print(flush=True)
    return len(indices)

"""Label conversion (raw ids -> trainIds) and RCS statistics, shared by the scripts in
``tools/convert_datasets``.

Each label file is converted by :func:`convert_label_file`: the output is written under a
temporary name and renamed, so an interrupted run never leaves a half-written file, and
an existing output is not rewritten (re-running a converter resumes where it stopped;
the statistics are then read from the finished file).
"""
import os
import os.path as osp
import re
from functools import partial
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
from mmengine.utils import track_parallel_progress, track_progress
from PIL import Image

from .label_tables import (
    CITYSCAPES_ID_TO_TRAINID,
    SYNTHIA_ID_TO_TRAINID,
    LabelConversionError,
    class_pixel_counts,
    convert_label,
)
from .rcs import write_rcs_stats

__all__ = [
    'read_palette_label', 'read_synthia_label', 'read_train_ids', 'find_files',
    'convert_label_folder',
    'convert_label_file', 'convert_dataset', 'collect_rcs_stats', 'TABLES'
]

TABLES = dict(cityscapes=CITYSCAPES_ID_TO_TRAINID, gta=CITYSCAPES_ID_TO_TRAINID,
              synthia=SYNTHIA_ID_TO_TRAINID)


def read_palette_label(path: str) -> np.ndarray:
    """Label ids of a single-channel (``L``) or palettised (``P``) PNG: GTA5 labels
    and Cityscapes ``*_gtFine_labelIds.png``."""
    with Image.open(path) as img:
        if img.mode not in ('L', 'P', 'I;16', 'I'):
            raise LabelConversionError(
                f'{path}: expected a single-channel or palette label PNG, got mode '
                f'{img.mode} (a colour image?)')
        return np.asarray(img).copy()


def read_synthia_label(path: str) -> np.ndarray:
    """Class ids of a SYNTHIA RAND-CITYSCAPES ``GT/LABELS`` file: a 16-bit 3-channel PNG
    whose first (R) channel holds the class id (the last channel in OpenCV's BGR order,
    as DAFormer reads it). A 2-D file is taken as the class ids themselves."""
    import cv2
    label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if label is None:
        raise ValueError(f'{path}: not a readable image')
    return label[:, :, -1] if label.ndim == 3 else label


def read_train_ids(path: str, num_classes: int = 19,
                   ignore_index: int = 255) -> np.ndarray:
    """A trainId label file as uint8: a single-channel PNG whose ids are the train ids
    ``0 .. num_classes - 1`` or ``ignore_index``; anything else (a colour label, an
    id outside the table) is a :class:`LabelConversionError` naming the file."""
    label = read_palette_label(path)
    unknown = sorted(set(np.unique(label).tolist()) - set(range(num_classes))
                     - {ignore_index})
    if unknown:
        raise LabelConversionError(
            f'{path}: label id(s) {unknown[:10]} are not train ids 0..{num_classes - 1} '
            f'or {ignore_index}; convert the labels first (tools/convert_datasets/) or '
            'give the class table with --config')
    return label.astype(np.uint8)


def find_files(root: str, pattern: str) -> List[str]:
    """Files under ``root`` (recursive) whose name matches ``pattern``, sorted.

    Raises:
        FileNotFoundError: when ``root`` does not exist or holds no such file.
    """
    if not osp.isdir(root):
        raise FileNotFoundError(f'folder {root} does not exist')
    regex = re.compile(pattern)
    out = [osp.join(d, f) for d, _, files in os.walk(root) for f in files
           if regex.fullmatch(f)]
    if not out:
        raise FileNotFoundError(f'no file matching {pattern!r} under {root}')
    return sorted(out)


def convert_label_file(src: str, dst: str, id_to_trainid: Mapping[int, int],
                       reader: Callable[[str], np.ndarray],
                       stats_root: Optional[str] = None) -> Dict:
    """Convert one raw label file to trainIds and count its class pixels.

    Args:
        src (str): Raw label file.
        dst (str): Output trainId PNG; kept as is if it exists already.
        id_to_trainid: The dataset's table (see :mod:`label_tables`).
        reader: Reads ``src`` into an integer id array.
        stats_root (str, optional): ``file`` in the returned dict is relative to it.

    Returns:
        dict: ``{trainId: pixels, ..., 'file': dst}`` (zero counts omitted).
    """
    if osp.isfile(dst):
        train_ids = read_train_ids(dst)
    else:
        train_ids = convert_label(reader(src), id_to_trainid, source=src)
        tmp = dst + '.part'
        Image.fromarray(train_ids).save(tmp, format='PNG')
        os.replace(tmp, dst)
    stats = class_pixel_counts(train_ids)
    stats['file'] = osp.relpath(dst, stats_root) if stats_root else dst
    return stats


def _stats_of_file(path: str, stats_root: Optional[str],
                   id_to_trainid: Optional[Mapping[int, int]] = None,
                   num_classes: int = 19) -> Dict:
    if id_to_trainid is None:
        train_ids = read_train_ids(path, num_classes)
    else:
        train_ids = convert_label(read_palette_label(path), id_to_trainid, source=path)
    stats = class_pixel_counts(train_ids, num_classes)
    stats['file'] = osp.relpath(path, stats_root) if stats_root else path
    return stats


def _convert_pair(pair, **kwargs):
    return convert_label_file(pair[0], pair[1], **kwargs)


def _run(func, tasks: Sequence, nproc: int) -> list:
    if nproc < 1:
        raise ValueError(f'--nproc must be >= 1, got {nproc}')
    try:
        if nproc > 1 and len(tasks) > 1:
            return track_parallel_progress(func, list(tasks), nproc)
        return track_progress(func, list(tasks))
    except BaseException:
        print(flush=True)  # end the progress bar's line before the error line
        raise


def convert_dataset(pairs: Sequence, id_to_trainid: Mapping[int, int],
                    reader: Callable[[str], np.ndarray], nproc: int = 1,
                    stats_root: Optional[str] = None) -> List[Dict]:
    """Convert ``(src, dst)`` label pairs with ``nproc`` processes and a progress bar;
    returns the per-file class statistics in the order of ``pairs``."""
    func = partial(_convert_pair, id_to_trainid=id_to_trainid, reader=reader,
                   stats_root=stats_root)
    return _run(func, pairs, nproc)


def collect_rcs_stats(label_files: Sequence[str], out_dir: str, nproc: int = 1,
                      stats_root: Optional[str] = None,
                      id_to_trainid: Optional[Mapping[int, int]] = None,
                      num_classes: int = 19) -> List[Dict]:
    """Count class pixels of existing label files and write the RCS files.

    The files hold trainIds, or raw ids that ``id_to_trainid`` maps to trainIds (a
    raw id it does not list raises :class:`LabelConversionError`); classes
    ``0 .. num_classes - 1`` are counted."""
    stats = _run(partial(_stats_of_file, stats_root=stats_root or out_dir,
                         id_to_trainid=id_to_trainid, num_classes=num_classes),
                 label_files, nproc)
    write_rcs_stats(out_dir, stats)
    return stats


def convert_label_folder(name: str, root: str, gt_dir: str, out_dir: Optional[str],
                         pattern: str, raw_suffix: str, trainid_suffix: str,
                         id_to_trainid: Mapping[int, int],
                         reader: Callable[[str], np.ndarray], nproc: int = 1,
                         rcs_subset: Optional[str] = None) -> List[Dict]:
    """What each dataset converter of tools/convert_datasets does: the raw label files
    matching ``pattern`` under ``<root>/<gt_dir>`` become trainId files beside them
    (``raw_suffix`` replaced by ``trainid_suffix``), with progress, and the RCS
    statistics of all of them (or of those under the sub-folder ``rcs_subset``, e.g.
    Cityscapes' ``train``) go to ``out_dir`` (default ``root``). Returns the
    statistics written."""
    out_dir = out_dir or root
    os.makedirs(out_dir, exist_ok=True)
    folder = osp.join(root, gt_dir)
    pairs = [(f, f[:-len(raw_suffix)] + trainid_suffix)
             for f in find_files(folder, pattern)]
    print(f'converting {len(pairs)} {name} label files in {folder} ({nproc} '
          'processes):', flush=True)
    stats = convert_dataset(pairs, id_to_trainid, reader, nproc, stats_root=out_dir)
    subset = ''
    if rcs_subset is not None:
        prefix = osp.join(folder, rcs_subset) + os.sep
        stats = [s for s, (src, _) in zip(stats, pairs) if src.startswith(prefix)]
        subset = f'the {len(stats)} {rcs_subset} '
    write_rcs_stats(out_dir, stats)
    print(f'done: {len(pairs)} *{trainid_suffix} in {folder}; RCS statistics of '
          f'{subset or str(len(stats)) + " "}files in {out_dir}')
    return stats

"""What a finished mmengine run left in its work dir.

A run writes ``<work_dir>/<timestamp>/vis_data/scalars.json`` (one JSON object per
line: ``step`` and the logged keys; training records every logger interval, one
validation record per validation) and ``<work_dir>/<timestamp>/<timestamp>.log`` (the
console log). A resumed run adds a timestamp folder; its steps continue.
"""
import glob
import json
import math
import os.path as osp
import re
from typing import Dict, List, Tuple

__all__ = ['RunLogError', 'run_dirs', 'read_scalars', 'final_metrics',
           'parse_class_tables', 'IOU_PREFIX']

#: Per-class IoU keys look like ``IoU.<class>`` and ``<dataset>/IoU.<class>``.
IOU_PREFIX = 'IoU.'


class RunLogError(Exception):
    """A run's logs are missing or do not hold what is asked for."""


def run_dirs(work_dir: str) -> List[str]:
    """The run folders (``<work_dir>/<timestamp>`` with ``vis_data/scalars.json``),
    oldest first."""
    found = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    return sorted(osp.dirname(osp.dirname(p)) for p in found)


def _records(path: str) -> List[dict]:
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise RunLogError(f'{path}:{n}: not a JSON record ({e.msg})') from None
    return out


def read_scalars(work_dir: str) -> Tuple[List[dict], List[dict]]:
    """(training records, validation records) of all runs in ``work_dir``, by step;
    a step logged again by a resumed run replaces the earlier record."""
    dirs = run_dirs(work_dir)
    if not dirs:
        raise RunLogError(f'no run logs (*/vis_data/scalars.json) under {work_dir}')
    train: Dict[int, dict] = {}
    val: Dict[int, dict] = {}
    for d in dirs:
        for rec in _records(osp.join(d, 'vis_data', 'scalars.json')):
            if 'step' not in rec:
                continue
            is_val = any(k == 'mIoU' or k.endswith('/mIoU') for k in rec)
            (val if is_val else train)[int(rec['step'])] = rec
    return ([train[s] for s in sorted(train)], [val[s] for s in sorted(val)])


def final_metrics(work_dir: str) -> Dict[str, float]:
    """The last validation's metrics of the newest run in ``work_dir`` that validated:
    ``mIoU``, ``source/mIoU``, ... and the per-class IoU ``IoU.<class>`` /
    ``source/IoU.<class>``: from the logged keys when the metric logs them, else
    from the per-class tables of that run's log text."""
    for d in reversed(run_dirs(work_dir)):
        vals = [r for r in _records(osp.join(d, 'vis_data', 'scalars.json'))
                if 'mIoU' in r]
        if not vals:
            continue
        metrics = {k: float(v) for k, v in vals[-1].items()
                   if k not in ('step', 'time', 'data_time', 'iter')
                   and isinstance(v, (int, float))}
        if not any(IOU_PREFIX in k for k in metrics):
            log = osp.join(d, f'{osp.basename(d)}.log')
            if osp.isfile(log):
                with open(log, errors='replace') as f:
                    metrics.update(parse_class_tables(f.read()))
        return metrics
    raise RunLogError(f'no validation record (mIoU) under {work_dir}')


_TABLE_START = 'per class results:'
_VAL_LINE = re.compile(r'Iter\(val\).*?\bmIoU: ')


def _parse_table(lines: List[str], start: int) -> Tuple[Dict[str, float], int]:
    """The ``| Class | IoU | ... |`` table (a block of ``+``/``|`` lines) that begins
    within a few lines after ``start``: class -> IoU, and the line after it."""
    i = start
    while i < len(lines) and i < start + 3 and not lines[i].startswith(('+', '|')):
        i += 1  # mmengine logs the table after an empty message line
    block = []
    while i < len(lines) and lines[i].startswith(('+', '|')):
        block.append(lines[i].strip())
        i += 1
    rows = [[c.strip() for c in line.strip('|').split('|')]
            for line in block if line.startswith('|')]
    if not rows or 'IoU' not in rows[0]:
        raise RunLogError(f'line {start + 1}: a per-class table with an IoU column '
                          'was expected after "per class results:"')
    col = rows[0].index('IoU')
    out = {}
    for cells in rows[1:]:
        value = cells[col]
        out[cells[0]] = math.nan if value.lower() == 'nan' else float(value)
    return out, i


def parse_class_tables(text: str) -> Dict[str, float]:
    """Per-class IoU of the last validation in a run's log text, as
    ``IoU.<class>`` (the primary dataset's table, printed first) and
    ``<name>/IoU.<class>`` for each further dataset, in the order their
    ``<name>/mIoU`` appear in the validation's summary line (MultiValLoop)."""
    lines = text.splitlines()
    groups: List[Tuple[List[Dict[str, float]], str]] = []
    tables: List[Dict[str, float]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith(_TABLE_START):
            table, i = _parse_table(lines, i + 1)
            tables.append(table)
            continue
        if _VAL_LINE.search(line):
            groups.append((tables, line))
            tables = []
        i += 1
    if not groups:
        raise RunLogError('no validation summary (Iter(val) ... mIoU) in the log')
    tables, summary = groups[-1]
    names = [''] + [m + '/' for m in re.findall(r'(\S+)/mIoU:', summary)]
    if len(tables) != len(names):
        raise RunLogError(f'the last validation printed {len(tables)} per-class '
                          f'tables for {len(names)} datasets ({summary.strip()})')
    return {f'{name}{IOU_PREFIX}{cls}': v
            for name, table in zip(names, tables) for cls, v in table.items()}

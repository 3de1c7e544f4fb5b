"""When each class arrives in the pseudo labels: the teacher's pseudo-label IoU per class
over training, read from the records ``PseudoLabelStatsHook`` writes into every work
dir (``pseudo_label_stats.jsonl``: per window of iterations, the pseudo labels against
the target's training labels, which training never reads).

For each work dir it prints one markdown row: for every ``--first CLASS=IOU`` the first
recorded iteration at which that class's pseudo-label IoU reaches IOU ('-' if never),
for every ``--classes`` class its IoU at each ``--at`` iteration, and the pseudo labels'
pixel accuracy at the last record. A class whose IoU at the end of training is still
climbing fast is measured by the target IoU at that iteration as much by when it started
to be labelled as by how well it is segmented (docs/RESULTS.md, "The thin classes arrive
last in the pseudo labels"). Nothing is trained or loaded: the tool reads JSON lines.

Usage::

    python tools/analysis/pseudo_label_curve.py WORK_DIR [WORK_DIR ...]
        [--classes pole 'traffic sign'] [--at 3000 3500 4000]
        [--first pole=20 'traffic sign=5'] [--csv FILE]
"""
import argparse
import csv
import io
import json
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from mmseg_dida.engine.hooks.pseudo_label_hook import STATS_FILENAME
from mmseg_dida.utils.atomic_files import atomic_write_text


def load_records(work_dir: str) -> List[dict]:
    """The records of ``work_dir``, one per window, sorted by iteration (a later record
    of the same iteration, as a resumed run writes, replaces an earlier one)."""
    path = osp.join(work_dir, STATS_FILENAME)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'pseudo_label_curve: no {STATS_FILENAME} in {work_dir} '
            '(PseudoLabelStatsHook writes it into the work dir of every UDA run; is this '
            'a work dir?)')
    by_iter: Dict[int, dict] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                by_iter[int(record['iter'])] = record
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f'pseudo_label_curve: {path}, line {lineno}: not a '
                                 f'pseudo-label record ({e})') from None
    if not by_iter:
        raise ValueError(f'pseudo_label_curve: {path} holds no record')
    return [by_iter[k] for k in sorted(by_iter)]


def class_iou(record: dict, cls: str) -> Optional[float]:
    """Pseudo-label IoU of ``cls`` in ``record`` (None: no labels, or the class is
    neither labelled nor predicted in the window)."""
    classes = record['classes']
    if cls not in classes:
        raise KeyError(f'pseudo_label_curve: class {cls!r} is not among the records\' '
                       f'classes {classes}')
    ious = record.get('pl_iou')
    return None if ious is None else ious[classes.index(cls)]


def first_reaching(records: Sequence[dict], cls: str, iou: float) -> Optional[int]:
    """The first recorded iteration at which ``cls``'s pseudo-label IoU is >= ``iou``."""
    for record in records:
        value = class_iou(record, cls)
        if value is not None and value >= iou:
            return int(record['iter'])
    return None


def curve_row(records: Sequence[dict], classes: Sequence[str], at: Sequence[int],
              first: Sequence[Tuple[str, float]]) -> Dict[str, object]:
    """One run's row: ``first.<cls>`` (iteration or None), ``<cls>@<iter>`` (IoU or
    None where that iteration has no record) and ``pl_acc`` at the last record."""
    by_iter = {int(r['iter']): r for r in records}
    for cls in list(classes) + [c for c, _ in first]:
        class_iou(records[0], cls)  # an unknown class name fails here, not silently
    row: Dict[str, object] = {}
    for cls, iou in first:
        row[f'first.{cls}>={iou:g}'] = first_reaching(records, cls, iou)
    for cls in classes:
        for it in at:
            row[f'{cls}@{it}'] = (class_iou(by_iter[it], cls) if it in by_iter
                                  else None)
    row['pl_acc'] = records[-1].get('pl_acc')
    row['last_iter'] = int(records[-1]['iter'])
    return row


def _threshold(text: str) -> Tuple[str, float]:
    cls, sep, value = text.rpartition('=')
    try:
        if not sep or not cls:
            raise ValueError
        return cls, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'--first takes CLASS=IOU (e.g. pole=20), got {text!r}') from None


def _fmt(value) -> str:
    if value is None:
        return '-'
    return f'{value:.1f}' if isinstance(value, float) else str(value)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('work_dirs', nargs='+')
    parser.add_argument('--classes', nargs='+', default=['pole', 'traffic sign'])
    parser.add_argument('--at', nargs='+', type=int, default=[3000, 3500, 4000])
    parser.add_argument('--first', nargs='*', type=_threshold,
                        default=[('pole', 20.0), ('traffic sign', 5.0)])
    parser.add_argument('--csv', help='also write the rows to this CSV file')
    args = parser.parse_args(argv)
    try:
        rows = [(osp.basename(osp.normpath(d)),
                 curve_row(load_records(d), args.classes, args.at, args.first))
                for d in args.work_dirs]
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(e.args[0] if e.args else e, file=sys.stderr)
        return 1
    keys = list(rows[0][1])
    head = ['run'] + [k.replace('first.', '').replace('>=', ' >= ') + ' from'
                      if k.startswith('first.') else k for k in keys]
    print('| ' + ' | '.join(head) + ' |')
    print('|---' * len(head) + '|')
    for name, row in rows:
        print(f'| {name} | ' + ' | '.join(_fmt(row[k]) for k in keys) + ' |')
    if args.csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=['run'] + keys)
        writer.writeheader()
        writer.writerows(dict(row, run=name) for name, row in rows)
        atomic_write_text(args.csv, buf.getvalue())
    return 0


if __name__ == '__main__':
    sys.exit(main())

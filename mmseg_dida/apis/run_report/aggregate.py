"""Mean +- std over seeds and the tables that show them (Markdown and CSV).

``runs`` everywhere: config name -> {seed: metrics}, metrics as
:func:`~run_report.logs.final_metrics` returns them (``mIoU``, ``source/mIoU``,
``IoU.<class>``, ``source/IoU.<class>``, ...). The std is the sample standard
deviation (n - 1), as the papers' "mean +- std over 3 seeds"; a class whose IoU is NaN
in a run (it does not occur in that validation set) is left out of that class's
statistics, and shown as '-' where no run has it.
"""
import csv
import io
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .logs import IOU_PREFIX

__all__ = ['mean_std', 'summarise', 'markdown_table', 'csv_text', 'SUMMARY_KEYS']

Runs = Mapping[str, Mapping[int, Mapping[str, float]]]

#: The summary columns, where present.
SUMMARY_KEYS = ('mIoU', 'source/mIoU', 'aAcc', 'mAcc')


def mean_std(values: Sequence[float]) -> Tuple[float, float, int]:
    """(mean, sample std, n) of the non-NaN values; std is 0 for one value and
    (NaN, NaN, 0) for none."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(vals)
    if not n:
        return math.nan, math.nan, 0
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return mean, std, n


def summarise(runs: Runs) -> Dict[str, Dict[str, Tuple[float, float, int]]]:
    """config -> metric -> (mean, std, n) over its seeds."""
    out = {}
    for config, seeds in runs.items():
        keys = sorted({k for m in seeds.values() for k in m})
        out[config] = {k: mean_std([m.get(k, math.nan) for m in seeds.values()])
                       for k in keys}
    return out


def _pm(stat: Optional[Tuple[float, float, int]]) -> str:
    if stat is None or stat[2] == 0:
        return '-'
    return f'{stat[0]:.2f} +- {stat[1]:.2f}'


def _ordered_classes(runs: Runs, prefix: str) -> List[str]:
    """The class names of ``<prefix>IoU.<class>`` keys, in logged order."""
    seen: Dict[str, None] = {}
    for seeds in runs.values():
        for m in seeds.values():
            for k in m:
                if k.startswith(prefix + IOU_PREFIX) and '/' not in k[len(prefix):]:
                    seen.setdefault(k[len(prefix) + len(IOU_PREFIX):], None)
    return list(seen)


def _prefixes(runs: Runs) -> List[str]:
    """'' (the primary dataset) and each further ``<name>/`` with per-class keys."""
    found = {''}
    for seeds in runs.values():
        for m in seeds.values():
            for k in m:
                head, _, tail = k.rpartition('/')
                if head and tail.startswith(IOU_PREFIX):
                    found.add(head + '/')
    return sorted(found)


def markdown_table(runs: Runs, title: str = 'Multi-seed results') -> str:
    """The summary (one row per config: metrics as mean +- std, mIoU per seed) and
    one per-class IoU table per dataset (a row per class, a column per config)."""
    stats = summarise(runs)
    keys = [k for k in SUMMARY_KEYS if any(k in s for s in stats.values())]
    lines = [f'# {title}', '',
             'mean +- std over seeds (sample std, n - 1); per-class IoU leaves out '
             "the runs in which a class does not occur ('-': in none).", '',
             '| config | seeds | ' + ' | '.join(keys) + ' | mIoU per seed |',
             '|---|---|' + '---|' * len(keys) + '---|']
    for config, seeds in runs.items():
        per_seed = ' / '.join(
            f"{seeds[s].get('mIoU', math.nan):.2f}" for s in sorted(seeds))
        lines.append(f"| {config} | {', '.join(map(str, sorted(seeds)))} | "
                     + ' | '.join(_pm(stats[config].get(k)) for k in keys)
                     + f' | {per_seed} |')
    for prefix in _prefixes(runs):
        classes = _ordered_classes(runs, prefix)
        if not classes:
            continue
        name = prefix.rstrip('/') or 'primary (target)'
        lines += ['', f'## Per-class IoU, {name}', '',
                  '| class | ' + ' | '.join(runs) + ' |',
                  '|---|' + '---|' * len(runs)]
        for cls in classes:
            key = f'{prefix}{IOU_PREFIX}{cls}'
            lines.append(f'| {cls} | ' + ' | '.join(
                _pm(stats[c].get(key)) for c in runs) + ' |')
    return '\n'.join(lines) + '\n'


def csv_text(runs: Runs) -> str:
    """One row per (config, seed) and a 'mean' and a 'std' row per config; a column
    per metric (summary metrics first, then the per-class IoU keys)."""
    stats = summarise(runs)
    all_keys = {k for seeds in runs.values() for m in seeds.values() for k in m}
    first = [k for k in SUMMARY_KEYS if k in all_keys]
    rest = sorted(k for k in all_keys if k not in first and IOU_PREFIX not in k)
    classes = [k for k in _class_keys(runs) if k in all_keys]
    keys = first + rest + classes
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator='\n')
    w.writerow(['config', 'seed'] + keys)

    def fmt(v):
        return '' if v is None or math.isnan(v) else f'{v:.4f}'

    for config, seeds in runs.items():
        for seed in sorted(seeds):
            w.writerow([config, seed] + [fmt(seeds[seed].get(k)) for k in keys])
        for i, label in ((0, 'mean'), (1, 'std')):
            w.writerow([config, label] + [
                fmt(stats[config][k][i]) if k in stats[config] else '' for k in keys])
    return buf.getvalue()


def _class_keys(runs: Runs) -> List[str]:
    return [f'{p}{IOU_PREFIX}{c}' for p in _prefixes(runs)
            for c in _ordered_classes(runs, p)]


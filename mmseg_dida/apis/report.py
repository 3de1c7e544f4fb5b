"""Plain-text tables of evaluation results."""
import statistics
from typing import Dict, List, Mapping, Sequence


def format_metrics(metrics: Mapping[str, float], title: str = '') -> str:
    """One row per dataset prefix (``''`` = primary/target, ``source/`` ...), one
    column per metric."""
    rows: Dict[str, Dict[str, float]] = {}
    for key, value in metrics.items():
        prefix, _, name = key.rpartition('/')
        rows.setdefault(prefix or 'target', {})[name] = float(value)
    names = sorted({n for r in rows.values() for n in r})
    return format_table([[ds] + [_fmt(r.get(n)) for n in names] for ds, r in rows.items()],
                        ['dataset'] + names, title)


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str],
                 title: str = '') -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = '+' + '+'.join('-' * (w + 2) for w in widths) + '+'
    out = [title] if title else []
    out.append(line)
    out.append('| ' + ' | '.join(str(h).ljust(w) for h, w in zip(header, widths)) + ' |')
    out.append(line)
    for r in rows:
        out.append('| ' + ' | '.join(str(c).ljust(w) for c, w in zip(r, widths)) + ' |')
    out.append(line)
    return '\n'.join(out)


def mean_std(values: Sequence[float]) -> str:
    """``mean +- std`` (sample std; just the value for one)."""
    if len(values) == 1:
        return f'{values[0]:.2f}'
    return f'{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}'


def format_per_class(results: Mapping[str, Sequence[Mapping[str, float]]],
                     title: str = '') -> str:
    """One row per method, one column per class: the class IoU (mean +- std over the
    method's runs when it has several). ``results``: method -> per-run
    ``{class: IoU}``; classes in the order they first appear."""
    classes: List[str] = []
    for runs in results.values():
        for run in runs:
            classes += [c for c in run if c not in classes]
    rows = []
    for method, runs in results.items():
        row = [method]
        for c in classes:
            values = [r[c] for r in runs if c in r]
            row.append(mean_std(values) if values else '-')
        rows.append(row)
    return format_table(rows, ['method'] + classes, title)


def _fmt(v):
    return '-' if v is None else f'{v:.2f}'

"""Plain-text tables of evaluation results."""
from typing import Dict, Mapping, Sequence


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


def _fmt(v):
    return '-' if v is None else f'{v:.2f}'

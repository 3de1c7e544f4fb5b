"""Training curves of several runs (seeds) of one config, as one PNG: a panel per
loss term, the pseudo-label confidence ``pseudo_weight`` (q^T, DAFormer Eq. 3) and
the validation mIoU (and each further dataset's ``<name>/mIoU``), a line per seed."""
from typing import Dict, List, Mapping, Sequence, Tuple

from mmseg_dida.models.losses.loss_keys import is_loss_key

__all__ = ['curve_keys', 'plot_curves']

Series = Mapping[int, Tuple[Sequence[dict], Sequence[dict]]]


def curve_keys(train: Sequence[dict], val: Sequence[dict]) -> List[str]:
    """The keys drawn, in panel order: loss terms (logged order, the total ``loss``
    last), ``pseudo_weight``, then the validation mIoU keys."""
    seen: Dict[str, None] = {}
    for rec in train:
        for k in rec:
            if (is_loss_key(k) and k != 'loss') or k == 'pseudo_weight':
                seen.setdefault(k, None)
    losses = [k for k in seen if k != 'pseudo_weight']
    keys = losses + (['loss'] if any('loss' in r for r in train) else [])
    keys += ['pseudo_weight'] if 'pseudo_weight' in seen else []
    val_keys: Dict[str, None] = {}
    for rec in val:
        for k in rec:
            if k == 'mIoU' or k.endswith('/mIoU'):
                val_keys.setdefault(k, None)
    return keys + sorted(val_keys, key=lambda k: (k != 'mIoU', k))


def plot_curves(runs: Series, path: str, title: str = '') -> List[str]:
    """Draw ``runs`` (seed -> (training records, validation records)) to ``path``
    (PNG, written complete or not at all); returns the keys drawn."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    keys: Dict[str, None] = {}
    for train, val in runs.values():
        for k in curve_keys(train, val):
            keys.setdefault(k, None)
    keys = list(keys)
    if not keys:
        raise ValueError(f'plot_curves: nothing to draw for {title or path}')
    cols = min(3, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for seed in sorted(runs):
            train, val = runs[seed]
            records = val if key.endswith('mIoU') else train
            pts = [(r['step'], r[key]) for r in records if key in r]
            if pts:
                steps, values = zip(*pts)
                ax.plot(steps, values, marker='o' if len(pts) < 5 else None,
                        linewidth=1.2, label=f'seed {seed}')
        ax.set_title(key, fontsize=9)
        ax.set_xlabel('iteration', fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        values = [v for line in ax.get_lines() for v in line.get_ydata()]
        positive = [v for v in values if v > 0]
        if is_loss_key(key) and positive and max(positive) > 20 * min(positive):
            ax.set_yscale('log')  # losses that fall by orders of magnitude
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in list(axes.flat)[len(keys):]:
        ax.axis('off')
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    from mmseg_dida.utils.atomic_files import atomic_write
    try:
        with atomic_write(path, 'wb') as f:  # complete or absent
            fig.savefig(f, format='png', dpi=100)
    finally:
        plt.close(fig)
    return keys

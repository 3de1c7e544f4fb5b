"""Configs as flat dicts, for comparing what a config changes against another."""


def flat(d, prefix=''):
    """``{'a.b.c': value}`` of a nested dict (lists kept as values)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f'{prefix}{k}.'))
        else:
            out[f'{prefix}{k}'] = v
    return out

"""Config mistakes as one line naming the key and what it expects.

* :func:`check_config` -- a static pass over the parts of a config the runner builds
  *after* it has created the work dir (hooks, loops, optimiser, schedulers, datasets,
  pipelines, samplers, evaluators): an unknown ``type``, a key the component's
  constructor does not take (when it takes no ``**kwargs``), or a value whose type
  contradicts the constructor's annotation (``int``, ``float``, ``bool``, ``str``,
  optionally ``None``) raises :class:`ConfigError`. Constructors with ``**kwargs``
  or without annotations are not second-guessed.
* :func:`explain_build_error` -- for an exception raised while a component was built
  from the config (the model, in the runner): the deepest ``build_from_cfg`` frame of
  the traceback names the class and the arguments it got; the key at fault is found
  from the constructor's signature (unknown key, a value of another type than the
  annotation or the default) and the config path of that node, e.g.
  ``model.plugins[0].lambda_r: DiDA expects a float (default 5.0), got 'abc' (str)``.
"""
import difflib
import inspect
import typing
from typing import Any, Callable, Iterator, List, Optional, Tuple

__all__ = ['ConfigError', 'check_config', 'check_overrides', 'explain_build_error']


class ConfigError(ValueError):
    """An invalid key or value of a config; the message is one line."""


# ------------------------------------------------------------- signatures
def _init_of(cls) -> Optional[inspect.Signature]:
    target = cls.__init__ if inspect.isclass(cls) else cls
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):
        return None


def _hints(cls) -> dict:
    target = cls.__init__ if inspect.isclass(cls) else cls
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable forward references
        return {}


def _params(cls) -> Tuple[dict, bool]:
    """(named parameters, whether it takes **kwargs) of the constructor."""
    sig = _init_of(cls)
    if sig is None:
        return {}, True
    named = {n: p for n, p in sig.parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != 'self'}
    var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    return named, var_kw


_SIMPLE = {int: 'an int', float: 'a float', bool: 'a bool', str: 'a string'}


def _simple_types(annotation) -> Optional[Tuple[type, ...]]:
    """The simple types an annotation allows (None added for Optional), or None when
    it allows anything else too."""
    if annotation in _SIMPLE:
        return (annotation, )
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        out = []
        for arg in typing.get_args(annotation):
            if arg is type(None):
                out.append(type(None))
            elif arg in _SIMPLE:
                out.append(arg)
            else:
                return None
        return tuple(out)
    return None


def _fits(value, types: Tuple[type, ...]) -> bool:
    for t in types:
        if t is type(None) and value is None:
            return True
        if t is bool and isinstance(value, bool):
            return True
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t is str and isinstance(value, str):
            return True
    return False


def _expects(types: Tuple[type, ...]) -> str:
    names = [_SIMPLE.get(t, 'None') for t in types]
    return ' or '.join(names)


def _argument_problems(cls, args: dict, use_defaults: bool) -> List[Tuple[str, str]]:
    """(key, problem) for the arguments ``args`` of ``cls``'s constructor."""
    named, var_kw = _params(cls)
    hints = _hints(cls)
    name = getattr(cls, '__name__', str(cls))
    problems = []
    for key, value in args.items():
        if key in ('type', '_scope_'):
            continue
        if key not in named:
            if not var_kw:
                close = difflib.get_close_matches(key, list(named), n=2)
                hint = (f"did you mean {' or '.join(map(repr, close))}?" if close else
                        f"it takes {', '.join(named) or 'no argument'}")
                problems.append((key, f'{name} has no argument {key!r} ({hint})'))
            continue
        param = named[key]
        types = _simple_types(hints.get(key, param.annotation))
        default = param.default
        if types is None and use_defaults and default is not inspect.Parameter.empty \
                and type(default) in _SIMPLE:
            types = (type(default), )
        if types is not None and not _fits(value, types):
            dflt = '' if default is inspect.Parameter.empty else f' (default {default!r})'
            problems.append((key, f'{name} expects {_expects(types)}{dflt}, got '
                                  f'{value!r} ({type(value).__name__})'))
    return problems


# ------------------------------------------------------------- config walk
def _registries():
    from mmseg import registry as r
    return r


def _typed_nodes(cfg) -> Iterator[Tuple[str, dict, Any]]:
    """(path, node, registry) of the built-later components of a config."""
    r = _registries()

    def dataset(node, path):
        if not isinstance(node, dict):
            return
        if 'type' in node:
            yield path, node, r.DATASETS
        for i, t in enumerate(node.get('pipeline') or []):
            if isinstance(t, dict) and 'type' in t:
                yield f'{path}.pipeline[{i}]', t, r.TRANSFORMS
        for key in ('source', 'target', 'dataset'):
            if isinstance(node.get(key), dict):
                yield from dataset(node[key], f'{path}.{key}')
        for i, d in enumerate(node.get('datasets') or []):
            yield from dataset(d, f'{path}.datasets[{i}]')

    def dataloader(node, path):
        if not isinstance(node, dict):
            return
        for key in ('sampler', 'batch_sampler'):
            if isinstance(node.get(key), dict) and 'type' in node[key]:
                yield f'{path}.{key}', node[key], r.DATA_SAMPLERS
        yield from dataset(node.get('dataset'), f'{path}.dataset')

    def evaluator(node, path):
        items = node if isinstance(node, list) else [node]
        for i, e in enumerate(items):
            if isinstance(e, dict) and 'type' in e:
                yield (f'{path}[{i}]' if isinstance(node, list) else path), e, r.METRICS

    for name, hook in (cfg.get('default_hooks') or {}).items():
        if isinstance(hook, dict) and 'type' in hook:
            yield f'default_hooks.{name}', hook, r.HOOKS
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        if isinstance(hook, dict) and 'type' in hook:
            yield f'custom_hooks[{i}]', hook, r.HOOKS
    for key in ('train_cfg', 'val_cfg', 'test_cfg'):
        loop = cfg.get(key)
        if isinstance(loop, dict) and 'type' in loop:
            yield key, loop, r.LOOPS
        for name, extra in ((loop or {}).get('extra') or {}).items():
            if isinstance(extra, dict):
                yield from dataloader(extra.get('dataloader'),
                                      f'{key}.extra.{name}.dataloader')
                yield from evaluator(extra.get('evaluator'), f'{key}.extra.{name}.evaluator')
    wrapper = cfg.get('optim_wrapper')
    if isinstance(wrapper, dict):
        if 'type' in wrapper:
            yield 'optim_wrapper', wrapper, r.OPTIM_WRAPPERS
        if isinstance(wrapper.get('optimizer'), dict):
            yield 'optim_wrapper.optimizer', wrapper['optimizer'], r.OPTIMIZERS
    schedulers = cfg.get('param_scheduler') or []
    for i, s in enumerate(schedulers if isinstance(schedulers, list) else [schedulers]):
        if isinstance(s, dict) and 'type' in s:
            yield f'param_scheduler[{i}]', s, r.PARAM_SCHEDULERS
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        yield from dataloader(cfg.get(key), key)
    for key in ('val_evaluator', 'test_evaluator'):
        if cfg.get(key) is not None:
            yield from evaluator(cfg.get(key), key)


def _lookup(registry, type_):
    if not isinstance(type_, str):
        return type_
    try:
        return registry.get(type_)
    except Exception:  # mmengine raises for an unknown scope prefix
        return None


def _unknown_type(path: str, registry, type_) -> str:
    """``<path>.type: unknown <registry> type '<type_>' (did you mean ...?)``; the
    suggestions ignore case (``DIDA`` -> ``DiDA``)."""
    known = list(registry.module_dict) + list(
        getattr(registry.parent, 'module_dict', {}) or {})
    by_lower = {k.lower(): k for k in known}
    close = [by_lower[k] for k in
             difflib.get_close_matches(str(type_).lower(), list(by_lower), n=2)]
    hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ''
    return f'{path}.type: unknown {registry.name} type {type_!r}{hint}'


def check_config(cfg) -> None:
    """Raise :class:`ConfigError` for the first invalid key or value of the parts
    the runner builds after creating the work dir (see the module docstring)."""
    for path, node, registry in _typed_nodes(cfg):
        cls = _lookup(registry, node['type'])
        if cls is None:
            raise ConfigError(_unknown_type(path, registry, node['type']))
        args = dict(node)
        if path == 'optim_wrapper':  # keys of mmengine's optimiser-wrapper constructor
            for key in ('constructor', 'paramwise_cfg', 'optimizer'):
                args.pop(key, None)
        problems = _argument_problems(cls, args, use_defaults=False)
        if problems:
            key, problem = problems[0]
            raise ConfigError(f'{path}.{key}: {problem}')
    _check_feature_distance_classes(cfg)


def _check_feature_distance_classes(cfg) -> None:
    """A UDA model whose feature distance is on must name thing classes that are
    train ids of its segmentor (a class list copied from a 19-class config into a
    4-class one selects no pixel, silently)."""
    model = cfg.get('model') or {}
    if 'segmentor' not in model or not model.get('imnet_feature_dist_lambda', 0.005):
        return
    classes = model.get('imnet_feature_dist_classes', None)
    head = (model.segmentor.get('decode_head') or {})
    num = head.get('num_classes', None)
    if num is None and 'single_scale_head' in head:  # HRDA
        num = head.single_scale_head.get('num_classes', None)
    if classes is None or not isinstance(num, int):
        return
    outside = [c for c in classes if not (isinstance(c, int) and 0 <= c < num)]
    if outside:
        raise ConfigError(
            f'model.imnet_feature_dist_classes: {outside} are no train ids of the '
            f'{num} classes (0..{num - 1}) of model.segmentor; list the train ids of '
            'your "thing" classes, or set imnet_feature_dist_lambda=0')


# ------------------------------------------------------------- overrides
def _strings(node, path='') -> Iterator[Tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f'{path}.{k}' if path else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _strings(v, f'{path}[{i}]')


def check_overrides(cfg, before: dict, options: dict) -> None:
    """Raise :class:`ConfigError` for a ``--cfg-options`` override of a top-level
    config variable (e.g. ``target_root``) that changes nothing: mmengine resolves
    variables such as ``_base_.target_root`` when the config file is read, so the
    settings that used the old value keep it. ``before``: the top-level values
    before the override."""
    for key, new in options.items():
        old = before.get(key)
        if '.' in key or not isinstance(old, str) or not isinstance(new, str) \
                or old == new:
            continue
        def uses(value, root):
            return value == root or value.startswith(root.rstrip('/') + '/')
        strings = [(p, v) for p, v in _strings(dict(cfg)) if p != key]
        users = [p for p, v in strings if uses(v, old) and '.' in p]
        if users and not any(uses(v, new) for _, v in strings):
            shown = ' '.join(f'{p}={new}' for p in users[:4])
            more = f' (and {len(users) - 4} more)' if len(users) > 4 else ''
            raise ConfigError(
                f'--cfg-options {key}={new} changes nothing: config variables are '
                f'resolved when the file is read and no setting uses the new value; '
                f'set the settings that use {old!r} instead: {shown}{more}')


# ------------------------------------------------------------- after a failure
def _deepest_build(tb) -> Optional[Tuple[Any, dict, Any, Any]]:
    """(class, arguments, type, registry) of the innermost mmengine
    ``build_from_cfg`` frame; the class is None when the type is not registered."""
    found = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == 'build_from_cfg' and 'obj_type' in frame.f_locals:
            loc = frame.f_locals
            found = (loc.get('obj_cls'), dict(loc.get('args') or {}), loc['obj_type'],
                     loc.get('registry'))
        tb = tb.tb_next
    return found


def _is_type(cls_or_name) -> Callable[[Any], bool]:
    """Does a config ``type`` value name ``cls_or_name`` (a class, or a type string
    that is not registered)?"""
    if isinstance(cls_or_name, str):
        return lambda t: t == cls_or_name
    name = getattr(cls_or_name, '__name__', None)
    return lambda t: t is cls_or_name or (isinstance(t, str) and t.split('.')[-1] == name)


def _paths_of(node, is_type, path='') -> Iterator[Tuple[str, dict]]:
    """Config paths of the dict nodes whose ``type`` passes ``is_type``."""
    if isinstance(node, dict):
        if 'type' in node and is_type(node['type']):
            yield path, node
        for k, v in node.items():
            yield from _paths_of(v, is_type, f'{path}.{k}' if path else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _paths_of(v, is_type, f'{path}[{i}]')


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # e.g. arrays
        return False


def _failing_node(cfg, root: Optional[str], is_type, args: dict) -> Optional[str]:
    """The config path of the node a failing ``build_from_cfg`` call was given: of the
    nodes of its type (under ``root`` first), the one whose values are the call's
    arguments, else whose keys are, else the first; the most nested first (a
    top-level variable such as ``source_train`` is a copy the runner never builds)."""
    nodes = list(_paths_of(cfg.get(root), is_type, root)) if root else []
    if not nodes:
        nodes = list(_paths_of(dict(cfg), is_type))
    nodes.sort(key=lambda pn: -(pn[0].count('.') + pn[0].count('[')))
    skip = ('type', '_scope_', 'init_cfg')
    same_values = [p for p, n in nodes if all(k in args and _same(args[k], v)
                                              for k, v in n.items() if k not in skip)]
    same_keys = [p for p, n in nodes if set(n) - set(skip) <= set(args)]
    return (same_values or same_keys or [p for p, _ in nodes] or [None])[0]


def explain_build_error(cfg, exc: BaseException, root: str = 'model') -> Optional[str]:
    """One line for ``exc``, raised while building a component of ``cfg`` from its
    config, naming the config key and what it expects; None when the traceback has
    no ``build_from_cfg`` frame (not a config error)."""
    found = _deepest_build(exc.__traceback__)
    if found is None:
        return None
    cls, args, type_, registry = found
    if cls is None and isinstance(type_, str) and registry is not None:  # unregistered
        path = _failing_node(cfg, root, _is_type(type_), args) or root or 'type'
        return _unknown_type(path, registry, type_)
    name = getattr(cls, '__name__', str(cls))
    path = _failing_node(cfg, root, _is_type(cls), args) or root or name
    problems = _argument_problems(cls, args, use_defaults=True)
    if problems:
        key, problem = problems[0]
        return f'{path}.{key}: {problem}'
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ''
    if text.startswith((f'{name}:', f'{name}.')):  # the class's own message
        return f'{path}: {text}'
    return f'{path}: {name}: {type(exc).__name__}: {text}'

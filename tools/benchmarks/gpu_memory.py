"""Peak GPU memory of one training step of a config: measured on CUDA, estimated without.

For every config the UDA model is built as the config says (student, EMA teacher,
ImageNet model for the feature distance, plug-ins such as MIC and DiDA with g' and
h'), its optimiser from ``optim_wrapper`` (AdamW with its parameter groups), and a
synthetic batch at the config's training crop and batch size (read from the source
pipeline's ``RandomCrop`` and ``train_dataloader.batch_size``; the datasets are not
needed). The peak counts one full training step after the first one, i.e. with
AdamW's two moments allocated: parameters, buffers, gradients, optimiser state and the
activations of every backward group.

* **CUDA** (``--device cuda``): each configuration in a fresh process (``--jobs``
  of them at once: each measures its own peak), the optimiser's state allocated
  (:func:`prime_optimizer`: AMP's loss scaler may skip the first updates), ``--warmup``
  steps, then ``torch.cuda.max_memory_allocated`` over one step.
* **Estimate** (``--device fake``, the default without CUDA): the same step on fake
  tensors, counted by the estimator of :mod:`mmseg_dida.apis.memory_estimate` (its
  docstring says how, and what it assumes).
* **Real CPU** (``--device cpu``, for validation on small sizes): the step on real CPU
  tensors under the same counter.

Usage::

    python tools/benchmarks/gpu_memory.py configs/daformer/daformer_mitb5_gta2cs.py
    python tools/benchmarks/gpu_memory.py configs/dida/*_mitb5_gta2cs_dida.py \\
        --amp both --memory-saving all --json mem.json --markdown docs/gpu_memory_table.md
"""
import argparse
import copy
import gc
import json
import os.path as osp
import sys
import time
from contextlib import nullcontext
from typing import Dict, List, Optional

import torch

from mmseg_dida.apis.memory_estimate import (
    AutocastContext,
    GiB,
    prime_optimizer,
    state_bytes,
    step_peak,
    to_fake,
)
from mmseg_dida.apis.step_benchmark import run_child, synthetic_batch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

CARDS = (11, 24, 48, 80)

def training_crop(cfg) -> tuple:
    """(h, w) of the source pipeline's RandomCrop (else the preprocessor size)."""
    ds = cfg.train_dataloader.dataset
    source = ds.get('source', ds)
    for t in source.get('pipeline', []):
        if t.get('type') == 'RandomCrop':
            crop = t['crop_size']
            return (crop, crop) if isinstance(crop, int) else tuple(crop)
    size = cfg.model.get('segmentor', cfg.model).data_preprocessor.get('size')
    if size:
        return tuple(size)
    raise ValueError('no RandomCrop in the source pipeline and no preprocessor size')


def _strip_pretrained(node):
    """Drop checkpoint initialisation (no pretrained files needed for memory)."""
    if isinstance(node, dict):
        init = node.get('init_cfg')
        if isinstance(init, dict) and 'checkpoint' in init:
            node['init_cfg'] = None
        if node.get('pretrained'):
            node['pretrained'] = None
        for v in node.values():
            _strip_pretrained(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _strip_pretrained(v)


def dida_modes() -> List[str]:
    """The DiDA plug-in's fixed memory modes, in its own order."""
    from mmseg_dida.models.utils.memory_saving import MEMORY_SAVING
    return [m for m in MEMORY_SAVING if m != 'auto']


def load_case(config: str, memory_saving: Optional[str] = None, size=None,
              batch: Optional[int] = None):
    """(cfg, crop, batch) ready to build: pretrained files dropped, the
    preprocessor's padding size set to the crop when the config has none, DiDA's
    ``memory_saving`` set when given (a config without DiDA ignores it; a mode that
    splits the domains into two passes with ``degraded_norm='per_domain'``, the rule
    that gives every mode the same losses with BatchNorm)."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    crop = tuple(size) if size else training_crop(cfg)
    batch = batch or cfg.train_dataloader.batch_size
    _strip_pretrained(cfg.model)
    seg = cfg.model.get('segmentor', cfg.model)
    pre = seg.data_preprocessor
    if size or (pre.get('size') is None and pre.get('size_divisor') is None):
        pre.size = crop
    if size and seg.get('type') == 'HRDAEncoderDecoder' and seg.get('hr_crop_size'):
        seg.hr_crop_size = tuple(min(c, s // 2) for c, s in zip(seg.hr_crop_size, crop))
    if memory_saving is not None:
        for p in cfg.model.get('plugins', []) or []:
            if p.get('type') == 'DiDA':
                p['memory_saving'] = memory_saving
                if memory_saving != 'none':  # the modes that split the domains
                    p['degraded_norm'] = 'per_domain'  # normalise per domain in all
    return cfg, crop, batch


def has_dida(cfg) -> bool:
    return any(p.get('type') == 'DiDA' for p in cfg.model.get('plugins', []) or [])


def num_classes(cfg) -> int:
    seg = cfg.model.get('segmentor', cfg.model)
    head = seg.decode_head
    return head.get('num_classes') or head.single_scale_head.num_classes


def _optimizer_cfg(cfg, device: str):
    """The config's optim_wrapper; on the estimate AdamW's ``foreach`` is set as CUDA
    chooses it by default (one list-wide temporary per update, unlike the CPU loop)."""
    ow = copy.deepcopy(cfg.optim_wrapper)
    if device != 'cuda':
        ow['type'] = 'OptimWrapper'
        opt = ow.optimizer
        if opt.get('type') in ('AdamW', 'Adam', 'SGD') and 'fused' not in opt:
            opt.setdefault('foreach', True)
    return ow


def build(cfg, device: str, amp: bool):
    """(model, optim_wrapper) on ``device`` ('cuda', 'cpu' or 'fake' (+ its mode))."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import mmseg_dida  # noqa: F401
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(cfg.model))
    fake_mode = None
    if device == 'fake':  # values do not change memory: no initialisation
        from torch._subclasses.fake_tensor import FakeTensorMode
        fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
        to_fake(model, fake_mode)
        gc.collect()
    else:
        model.init_weights()
    if device == 'cuda':
        model = model.cuda()
    model.train()
    ow = _optimizer_cfg(cfg, device)
    if amp and device == 'cuda':
        ow['type'] = 'AmpOptimWrapper'
        ow.setdefault('loss_scale', 'dynamic')
    with (fake_mode if fake_mode is not None else nullcontext()):
        optim = build_optim_wrapper(model, ow)
    if amp and device != 'cuda':
        optim.optim_context = AutocastContext(torch.float16)
    return model, optim, fake_mode


def _quiet_logger():
    import logging

    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine').setLevel(logging.ERROR)


def measure(config: str, device: str, amp: bool = False,
            memory_saving: Optional[str] = None, size=None, batch=None,
            warmup: int = 1, full_first_step: bool = False,
            memory_limit_gb: Optional[float] = None) -> dict:
    """One configuration in this process: build, first step(s), then the peak of one
    more step. Returns a result row (bytes).

    On CUDA the first steps are ``warmup`` full steps; on fake and CPU tensors the
    optimiser's state is allocated by :func:`prime_optimizer` (what the first step
    leaves behind; ``full_first_step`` runs a full step instead, which gives the same
    peak at twice the time).

    ``memory_limit_gb`` (CUDA): the process may allocate only that much of the card
    (``torch.cuda.set_per_process_memory_fraction``), e.g. 24 to see which mode DiDA's
    ``memory_saving='auto'`` settles at on a 24 GB card. ``memory_saving_used`` in the
    row is the DiDA mode of the measured step (for ``'auto'`` on fake or CPU tensors,
    which never run out of memory: its first mode)."""
    _quiet_logger()
    t0, c0 = time.time(), time.process_time()
    cfg, crop, batch = load_case(config, memory_saving, size, batch)
    row = dict(config=osp.relpath(osp.abspath(config), REPO), crop=list(crop),
               batch=batch, amp=bool(amp),
               memory_saving=(memory_saving or _config_mode(cfg)) if has_dida(cfg)
               else None, device=device)
    if memory_limit_gb is not None:
        if device != 'cuda':
            raise ValueError('--memory-limit-gb needs --device cuda')
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, memory_limit_gb * GiB / total))
        row['memory_limit_gb'] = memory_limit_gb
    model, optim, fake_mode = build(cfg, device, amp)
    row['params'] = sum(p.numel() for p in model.parameters())
    row['trainable'] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # The batch is real (uint8 images and labels, as from a data loader).
    data = synthetic_batch(batch, crop, num_classes(cfg))
    if device == 'cuda':
        # AdamW's moments exist even if AMP's loss scaler skips the first updates.
        prime_optimizer(optim)
        for _ in range(max(1, warmup)):
            model.train_step(data, optim)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        model.train_step(data, optim)
        torch.cuda.synchronize()
        row.update(peak_bytes=torch.cuda.max_memory_allocated(),
                   reserved_bytes=torch.cuda.max_memory_reserved(),
                   state_bytes=state_bytes(model, optim.optimizer),
                   gpu=torch.cuda.get_device_name())
    else:
        counted = step_peak(model, optim, data, fake_mode, amp,
                            full_first_step=full_first_step)
        row.update(peak_bytes=counted['peak'], state_bytes=counted['static'])
        if fake_mode is not None:
            row['assumptions'] = counted['assumptions']
    used = [p.active_memory_saving for p in getattr(model, 'plugins', [])
            if hasattr(p, 'active_memory_saving')]
    if used:
        row['memory_saving_used'] = used[0]
    row['seconds'] = round(time.time() - t0, 1)
    row['cpu_seconds'] = round(time.process_time() - c0, 1)
    return row


def _config_mode(cfg) -> Optional[str]:
    for p in cfg.model.get('plugins', []) or []:
        if p.get('type') == 'DiDA':
            return p.get('memory_saving', 'none')
    return None


# ------------------------------------------------------------------- table
def fits(peak_bytes: int, headroom: float, context_gb: float) -> Optional[int]:
    """The smallest card of :data:`CARDS` (GB) that holds ``peak_bytes`` with the
    allocator's headroom and the CUDA context, or None."""
    need = peak_bytes / GiB * headroom + context_gb
    return next((c for c in CARDS if need <= c), None)


def method_name(config: str) -> str:
    name = osp.splitext(osp.basename(config))[0]
    parts = name.split('_')
    method = {'daformer': 'DAFormer', 'hrda': 'HRDA', 'mic': 'MIC(HRDA)',
              'source': 'source-only'}.get(parts[0], parts[0])
    arch = next((p for p in parts if p in ('mitb5', 'dlv2', 'mit')), '')
    arch = {'mitb5': 'MiT-B5', 'dlv2': 'DeepLabV2'}.get(arch, arch)
    return f"{method}{' + DiDA' if name.endswith('_dida') else ''} {arch}".strip()


def markdown(rows: List[dict], headroom: float, context_gb: float,
             code: Optional[dict] = None, command: Optional[str] = None) -> str:
    """One line per config and DiDA memory mode: peak GB and the smallest card that
    fits, fp32 and AMP side by side."""
    keyed: Dict[tuple, Dict[bool, dict]] = {}
    for r in rows:
        keyed.setdefault((r['config'], r.get('memory_saving')), {})[r['amp']] = r
    how = {'cuda': 'measured: torch.cuda.max_memory_allocated',
           'fake': 'estimated on fake tensors', 'cpu': 'counted on CPU tensors'}
    kinds = ', '.join(how[d] for d in sorted({r['device'] for r in rows}))
    lines = [
        f'Peak memory of one training step (GB = 2^30 bytes; {kinds}). '
        f"A card fits when peak x {headroom:g} (allocator headroom) + {context_gb:g} GB "
        "(CUDA context, workspaces) <= its size; \"fits\" names the smallest of "
        f"{'/'.join(map(str, CARDS))} GB." + (
            f" Code: commit {code['commit']}"
            f"{' + changes to ' + ', '.join(code['changed']) if code.get('changed') else ''}."
            if code and code.get('commit') else ''),
        *([f'Made by `{command}`.'] if command else []),
        '',
        '"x base": the peak over the same method\'s without DiDA.',
        '',
        '| config | crop x batch | DiDA memory_saving | fp32 GB | x base | fp32 fits | '
        'AMP GB | x base | AMP fits |',
        '|---|---|---|---|---|---|---|---|---|']
    # the baseline of configs/dida/<name>_dida.py is the row of <name>.py
    base = {(osp.basename(c), amp): r for (c, _), by_amp in keyed.items()
            for amp, r in by_amp.items() if 'peak_bytes' in r}

    def cell(r, config):
        if r is None:
            return ['', '', '']
        if 'error' in r:
            return ['error', '', r['error'][:60]]
        card = fits(r['peak_bytes'], headroom, context_gb)
        b = base.get((osp.basename(config).replace('_dida.py', '.py'), r['amp']))
        ratio = (f"{r['peak_bytes'] / b['peak_bytes']:.2f}"
                 if b is not None and b is not r else '')
        return [f"{r['peak_bytes'] / GiB:.1f}", ratio,
                f'{card} GB' if card else '> 80 GB']

    for (config, mode), by_amp in keyed.items():
        any_row = next(iter(by_amp.values()))
        crop = 'x'.join(map(str, any_row.get('crop', []))) + f" x {any_row.get('batch')}"
        lines.append('| ' + ' | '.join(
            [method_name(config), crop, f'`{mode}`' if mode else '-'] +
            cell(by_amp.get(False), config) + cell(by_amp.get(True), config)) + ' |')
    return '\n'.join(lines) + '\n'


def code_state() -> dict:
    """The commit the rows were made with and the files changed since (the model code
    decides the memory)."""
    import subprocess

    def git(*args):
        try:
            return subprocess.run(['git', *args], cwd=REPO, capture_output=True,
                                  text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ''
    return dict(commit=git('rev-parse', '--short', 'HEAD'),
                changed=[ln[3:] for ln in git('status', '--porcelain').splitlines()
                         if ln[3:].startswith(('mmseg_dida/', 'configs/'))])


def cases(configs, amp: str, memory_saving: str):
    """(config, amp, memory_saving) of every row asked for."""
    from mmengine.config import Config
    amps = {'off': [False], 'on': [True], 'both': [False, True]}[amp]
    for config in configs:
        dida = has_dida(Config.fromfile(config))
        if not dida or memory_saving == 'config':
            modes = [None]
        elif memory_saving == 'all':
            modes = dida_modes()
        else:
            modes = [memory_saving]
        for mode in modes:
            for a in amps:
                yield config, a, mode


def save(rows: List[dict], args, device: str, code: dict, command: str) -> None:
    """Write the rows (``--json``) and their table (``--markdown``)."""
    from mmseg_dida.utils.atomic_files import atomic_write_text
    if args.json:
        atomic_write_text(args.json, json.dumps(dict(
            device=device, headroom=args.headroom, context_gb=args.context_gb,
            torch=torch.__version__, code=code, command=command, rows=rows), indent=1))
    if args.markdown:
        atomic_write_text(args.markdown, markdown(rows, args.headroom, args.context_gb,
                                                  code, command))


def render(paths: List[str], out: Optional[str], headroom: float,
           context_gb: float) -> int:
    """Write (or print) the table of the rows in the JSON files ``paths``."""
    from mmseg_dida.utils.atomic_files import atomic_write_text
    rows, code, commands = [], None, []
    for path in paths:
        with open(path) as f:
            saved = json.load(f)
        rows += saved['rows']
        code = code or saved.get('code')
        if saved.get('command'):
            commands.append(saved['command'])
    table = markdown(rows, headroom, context_gb, code, '`; `'.join(commands) or None)
    if out:
        atomic_write_text(out, table)
    print(table)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('configs', nargs='*')
    p.add_argument('--render', nargs='+', default=None, metavar='JSON',
                   help='only write the table (--markdown) of rows saved by --json')
    p.add_argument('--amp', nargs='?', const='on', default='off',
                   choices=['off', 'on', 'both'],
                   help='mixed precision: --amp (on), --amp both (fp32 and AMP rows)')
    p.add_argument('--memory-saving', default='config',
                   help="DiDA's memory_saving for configs with DiDA: 'config' (as the "
                        "config says), 'all' (every mode) or one mode")
    p.add_argument('--device', choices=['auto', 'cuda', 'fake', 'cpu'], default='auto',
                   help='cuda: measure; fake: estimate (default without CUDA); cpu: '
                        'real CPU tensors under the same counter (validation)')
    p.add_argument('--size', type=int, nargs=2, default=None,
                   help='override the crop (h w), e.g. for a quick check')
    p.add_argument('--batch', type=int, default=None, help='override the batch size')
    p.add_argument('--warmup', type=int, default=2, help='CUDA: steps before the measured one')
    p.add_argument('--memory-limit-gb', type=float, default=None,
                   help='CUDA: let the process allocate only this much of the card '
                        "(e.g. 24: which mode memory_saving='auto' settles at there)")
    p.add_argument('--headroom', type=float, default=1.1)
    p.add_argument('--context-gb', type=float, default=0.5)
    p.add_argument('--json', default=None, help='write the rows as JSON')
    p.add_argument('--markdown', default=None, help='write the table as markdown')
    p.add_argument('--jobs', type=int, default=1,
                   help='CUDA: rows measured at once (each in its own process)')
    p.add_argument('--in-process', action='store_true',
                   help='CUDA: measure in this process (default: a fresh one per row)')
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.render:
        return render(args.render, args.markdown, args.headroom, args.context_gb)
    if not args.configs:
        p.error('give configs (or --render JSON)')
    device = args.device
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'fake'
    if args.child:  # one row, in a fresh process
        mode = None if args.memory_saving == 'config' else args.memory_saving
        print('RESULT ' + json.dumps(measure(args.configs[0], device, args.amp == 'on',
                                             mode, args.size, args.batch, args.warmup,
                                             memory_limit_gb=args.memory_limit_gb)))
        return 0
    code = code_state()
    command = 'python tools/benchmarks/gpu_memory.py ' + ' '.join(
        argv if argv is not None else sys.argv[1:])
    rows: List[dict] = []
    def one_row(case) -> dict:
        config, amp, mode = case
        t0 = time.time()
        try:
            if device == 'cuda' and not args.in_process:
                cmd = [sys.executable, osp.abspath(__file__), config, '--child',
                       '--device', 'cuda', '--amp', 'on' if amp else 'off',
                       '--memory-saving', mode or 'config', '--warmup',
                       str(args.warmup)]
                if args.size:
                    cmd += ['--size', *map(str, args.size)]
                if args.batch:
                    cmd += ['--batch', str(args.batch)]
                if args.memory_limit_gb is not None:
                    cmd += ['--memory-limit-gb', str(args.memory_limit_gb)]
                try:
                    row = run_child(cmd, config, 'memory')
                except SystemExit as e:  # run_child stops with the child's stderr
                    raise RuntimeError(str(e)[-2000:]) from None
            else:
                row = measure(config, device, amp, mode, args.size, args.batch,
                              args.warmup, memory_limit_gb=args.memory_limit_gb)
        except Exception as e:  # one failed row does not stop the table
            row = dict(config=osp.relpath(osp.abspath(config), REPO), amp=amp,
                       memory_saving=mode, device=device,
                       error=f'{type(e).__name__}: {e}'.splitlines()[0][:500])
        peak = (f"peak {row['peak_bytes'] / GiB:.2f} GB (state "
                f"{row['state_bytes'] / GiB:.2f} GB)" if 'peak_bytes' in row
                else row['error'])
        if row.get('memory_saving_used') not in (None, row.get('memory_saving')):
            peak += f" with {row['memory_saving_used']}"
        print(f"{method_name(config):<28} {'AMP ' if amp else 'fp32'} "
              f"{mode or '-':<10} {peak}  [{time.time() - t0:.0f} s]", flush=True)
        return row

    todo = list(cases(args.configs, args.amp, args.memory_saving))
    if device == 'cuda' and not args.in_process and args.jobs > 1:
        # Each row in its own process measures its own peak: they may share the card.
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(args.jobs) as pool:
            results = pool.map(one_row, todo)
            todo = []
            rows += list(results)
    for case in todo:
        rows.append(one_row(case))
        # after every row: a long table keeps what it has
        save(rows, args, device, code, command)
    save(rows, args, device, code, command)
    table = markdown(rows, args.headroom, args.context_gb, code, command)
    print('\n' + table)
    return 0 if all('error' not in r for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())

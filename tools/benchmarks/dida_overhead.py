"""Overhead of DiDA on a DAFormer (DACS) training step: time, peak memory, FLOPs.

Every variant runs in fresh processes (one timing it, one measuring its memory, so
that the allocator setting of the memory run cannot slow the timed steps), the
variants are interleaved over ``--repeats`` rounds (so that load from other processes
on the machine hits all of them alike), and the same synthetic batch and model config
are used by all. Per variant it reports:

* step time: per round the median of the timed steps (after ``--warmup`` steps in
  that variant's own process), then the least disturbed round (load from other
  processes only ever adds time; ``step_s``) and the median over the rounds
  (``step_s_median``, what a GPU with its clocks and caches warming up needs: run
  ``--repeats 3`` or more); and its parts: source group (with the EMA update), mixed
  group (with the teacher's pseudo labels and ClassMix), the plug-in's groups, the
  optimiser update;
* FLOPs of one step (forward + backward of every loss group), counted with
  ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and convolutions:
  the arithmetic the step must do) with grouped convolutions' backward counted right
  (:mod:`mmseg_dida.apis.flops`; torch's own formula counts MiT's depthwise
  convolutions' weight gradients channels-times too high), split the same way;
* the time ratio the FLOPs predict (``pred x``): the baseline's step plus the
  variant's extra FLOPs at the rate (seconds per GFLOP) of the baseline's own network
  passes. The raw FLOP ratio overstates the expected time, because the baseline's
  step also does work the counter does not see (EMA, augmentation, ClassMix, the
  accuracy metric, the optimiser, per-operator overhead) which DiDA does not repeat;
  ``rate x``: the plug-in groups' seconds per GFLOP over that baseline rate (1.0:
  DiDA's extra work runs exactly as efficiently as the baseline's own passes; more
  would be wasted work);
* achieved TFLOP/s (``tflops``: the step's counted FLOPs over its time; ``_median``
  with the median time) and its fraction of the device's peak (``peak_fraction``): the
  peak is measured in the same run by a large matrix product on the same device in a
  fresh process (bf16 8192^2 on CUDA, fp32 1024^2 on the CPU with the run's threads;
  the best of its repetitions), or given with ``--peak-tflops``;
* peak memory (``peak_mb``): on CUDA ``torch.cuda.max_memory_allocated``; on CPU the
  process's peak resident set size (``getrusage`` ``ru_maxrss``) minus its resident
  size just before the model is built, with glibc's malloc told to serve every block
  of 64 KiB or more by mmap (``MALLOC_MMAP_THRESHOLD_=65536``), so freed tensors go
  back to the system at once and the resident size follows the live tensors. Both
  count parameters, buffers, gradients and optimiser state of student, teacher and
  ImageNet model plus the activations: what a GPU's peak allocated memory counts.
  ``state_mb``: the part that lives between steps (parameters, buffers, optimiser
  state), counted from the tensors themselves.

Speed settings (``--speed``; :mod:`mmseg_dida.engine.speed_options`): each variant is
timed under every setting given, in the same process, the settings interleaved over
``--speed-rounds`` rounds (a setting's first turn warms up ``--warmup`` steps, later
turns one step), so that e.g. channels_last is compared with the default on the same
model, data and load; a row is ``variant`` (the setting ``default``) or
``variant+setting``. A setting is ``default`` or keys joined by ``+``:

* ``fused`` / ``foreach`` / ``for_loop``: AdamW's kernel (``default``: what training
  uses, ``speed.fused_optimizer='auto'``: fused on CUDA, torch's choice elsewhere,
  which is the per-tensor loop on the CPU and foreach on CUDA);
* ``channels_last``, ``compile`` (``--compile-backend``, default inductor),
  ``cudnn_benchmark``: as in training;
* ``fp32``: no autocast in this setting although ``--amp`` is given (with ``foreach``:
  the fp32 step before the speed options).

Per row ``speed_ratio`` is its step time over the same variant's first setting, and
``time_ratio`` over the first variant's under the same setting. On a shared CPU,
``cpu_s`` (the median step's CPU time of the timing process, ``time.process_time``;
with one thread the step time of a quiet machine) and ``speed_ratio_cpu`` are what
load from other processes cannot inflate; the peak reports ``tflops_cpu`` the same way
(``peak_fraction_cpu``). Memory is measured per
setting in fresh processes. With ``--out`` the JSON is rewritten after every process,
so a run cut short keeps what it measured.

Usage::

    python tools/benchmarks/dida_overhead.py --model tiny --size 128 256 --batch 2
    python tools/benchmarks/dida_overhead.py --model daformer --size 256 256 --batch 2
    python tools/benchmarks/dida_overhead.py --model daformer --size 512 512 --device cuda \
        --amp --only time --repeats 3 --variants daformer dida
    python tools/benchmarks/dida_overhead.py --model tiny --only time --repeats 1 \
        --speed-rounds 5 --speed default fused channels_last --variants daformer dida
"""
import argparse
import json
import os
import os.path as osp
import resource
import statistics
import sys
import time
from typing import Optional

from mmseg_dida.apis.step_benchmark import (
    SEGMENTS,
    after_each_group,
    persistent_bytes,
    rss_mb,
    run_child,
    synthetic_batch,
    timed_steps,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VARIANTS = dict(
    daformer=None,
    dida=dict(type='DiDA'),
    dida_perdom=dict(type='DiDA', memory_saving='per_domain'),
    dida_gprime=dict(type='DiDA', memory_saving='g_prime'),
    dida_enc=dict(type='DiDA', memory_saving='encoders'),
)


#: keys of a speed setting; at most one of OPTIMIZER_KEYS
SPEED_KEYS = ('fused', 'foreach', 'for_loop', 'channels_last', 'compile',
              'cudnn_benchmark', 'fp32')
OPTIMIZER_KEYS = ('fused', 'foreach', 'for_loop')


def speed_setting(text: str) -> str:
    """The canonical name of a speed setting (``default`` or keys joined by ``+`` in
    :data:`SPEED_KEYS` order); raises ValueError for an unknown key or two optimiser
    kernels."""
    keys = [k for k in text.split('+') if k and k != 'default']
    unknown = [k for k in keys if k not in SPEED_KEYS]
    if unknown:
        raise ValueError(f'unknown speed key {unknown[0]!r}; the keys are '
                         f'{", ".join(SPEED_KEYS)} (joined by +), or default')
    if sum(k in OPTIMIZER_KEYS for k in keys) > 1:
        raise ValueError(f'{text}: one of {", ".join(OPTIMIZER_KEYS)} at most')
    keys = [k for k in SPEED_KEYS if k in keys]
    return '+'.join(keys) or 'default'


def _speed_arg(text: str) -> str:
    try:
        return speed_setting(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def row_name(variant: str, speed: str) -> str:
    return variant if speed == 'default' else f'{variant}+{speed}'


def segmentor_cfg(model: str, size):
    from mmengine.config import Config
    if model == 'tiny':
        cfg = Config.fromfile(
            osp.join(REPO, 'configs/_base_/models/benchmark_mit_tiny.py'))
        seg = cfg.model
        seg.decode_head.type = 'WeightedSegformerHead'
    else:
        cfg = Config.fromfile(osp.join(REPO,
                                       'configs/_base_/models/daformer_mitb5.py'))
        seg = cfg.model
        seg.backbone.init_cfg = None  # timing only: no pretrained file needed
    seg.data_preprocessor.size = tuple(size)
    return seg


class SpeedState:
    """The speed setting of the model in this process, switched in place between
    settings (:mod:`mmseg_dida.engine.speed_options` does the switching): one AdamW
    per kernel (their moments kept apart, one loss scaler shared), channels_last on
    or off, the encoders' compiled forward on or off (compiled once), cuDNN's
    benchmark mode."""

    def __init__(self, model, device, amp: bool, compile_backend: str):
        from mmseg_dida.engine.speed_options import choose_fused
        self.model, self.device, self.amp = model, device, amp
        self.compile_backend = compile_backend
        self.default_kernel = ('fused' if choose_fused(dict(type='AdamW'),
                                                      {device.type}) else 'torch')
        self.optimizers, self.wrappers = {}, {}
        self.scaler = None
        self.channels_last, self.input_hooks = False, []
        self.compiled = None

    def optimizer(self, kernel: str):
        import torch
        if kernel not in self.optimizers:
            extra = dict(fused=dict(fused=True), foreach=dict(foreach=True),
                         for_loop=dict(foreach=False), torch={})[kernel]
            self.optimizers[kernel] = torch.optim.AdamW(
                self.model.parameters(), lr=6e-5, weight_decay=0.01, **extra)
        return self.optimizers[kernel]

    def wrapper(self, kernel: str, amp: bool):
        from mmengine.optim import AmpOptimWrapper, OptimWrapper

        from mmseg_dida.engine.mixed_precision import BF16OptimWrapper
        if (kernel, amp) not in self.wrappers:
            opt = self.optimizer(kernel)
            if amp and self.device.type != 'cuda':  # the CPU: bf16 (--amp bf16)
                w = BF16OptimWrapper(optimizer=opt)
            elif amp:  # CUDA: fp16 with dynamic loss scaling (tools/train.py --amp)
                w = AmpOptimWrapper(optimizer=opt, loss_scale='dynamic',
                                    dtype='float16')
                if self.scaler is None:
                    self.scaler = w.loss_scaler
                w.loss_scaler = self.scaler  # one scale, found once
            else:
                w = OptimWrapper(opt)
            self.wrappers[(kernel, amp)] = w
        return self.wrappers[(kernel, amp)]

    def set_compile(self, on: bool) -> None:
        from mmseg_dida.engine.speed_options import compile_encoders, encoder_modules
        modules = encoder_modules(self.model)
        if on and self.compiled is None:
            compile_encoders(self.model, backend=self.compile_backend)
            self.compiled = {n: m._compiled_call_impl for n, m in modules.items()}
        for name, module in modules.items():  # nn.Module.compile's own attribute
            module._compiled_call_impl = (self.compiled or {}).get(name) if on else None

    def apply(self, speed: str):
        """Put the model in setting ``speed``; returns its optimiser wrapper."""
        import torch

        from mmseg_dida.engine.speed_options import set_memory_format
        keys = set(speed.split('+'))
        cl = 'channels_last' in keys
        if cl != self.channels_last:
            self.input_hooks = set_memory_format(self.model, cl,
                                                 self.optimizers.values(),
                                                 self.input_hooks)
            self.channels_last = cl
        self.set_compile('compile' in keys)
        torch.backends.cudnn.benchmark = 'cudnn_benchmark' in keys
        kernel = next((k for k in OPTIMIZER_KEYS if k in keys), self.default_kernel)
        return self.wrapper(kernel, self.amp and 'fp32' not in keys)


def run_variant(args) -> dict:
    """One variant in this process: build, then per speed setting warm up and either
    time the step (interleaving the settings over ``--speed-rounds``; FLOPs counted
    once) or measure its peak memory (one setting)."""
    import torch
    from mmengine.config import ConfigDict
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import mmseg_dida  # noqa: F401
    from mmseg_dida.apis.flops import flop_counter

    init_default_scope('mmseg')
    torch.manual_seed(0)
    device = torch.device(args.device)
    seg = segmentor_cfg(args.model, args.size)
    plugin = VARIANTS[args.variant]
    uda = ConfigDict(type='DACS', segmentor=seg,
                     plugins=[plugin] if plugin else [],
                     pseudo_weight_ignore_top=0, pseudo_weight_ignore_bottom=0)
    if plugin and args.model == 'tiny':
        uda.plugins[0]['lambda_r'] = 5.0
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
        mem0 = torch.cuda.memory_allocated()
    rss0 = rss_mb()
    model = MODELS.build(uda)
    model.init_weights()
    model.to(device).train()
    state = SpeedState(model, device, args.amp, args.compile_backend)
    data = synthetic_batch(args.batch, args.size, seg.decode_head.num_classes)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize()

    marks: list = []
    hooks = [sync, lambda: marks.append(time.perf_counter())]
    after_each_group(model, hooks)
    out = dict(variant=args.variant,
               params=sum(p.numel() for p in model.parameters()),
               trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
               default_kernel=state.default_kernel)
    if args.measure == 'memory':
        optim = state.apply(args.speed[0])
        for _ in range(args.warmup + 2):
            model.train_step(data, optim)
        sync()
        if device.type == 'cuda':
            peak = (torch.cuda.max_memory_allocated() - mem0) / 2**20
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0
        out.update(peak_mb=peak, state_mb=persistent_bytes(
            model, *state.optimizers.values()) / 2**20)
        return out
    runs = {speed: [] for speed in args.speed}
    for r in range(args.speed_rounds):
        for speed in args.speed:
            optim = state.apply(speed)
            for _ in range(args.warmup if r == 0 else 1):
                model.train_step(data, optim)
            sync()
            runs[speed].append(timed_steps(model, data, optim, args.steps, sync, marks))
    # FLOPs of one step, split like the time (the EMA and optimiser arithmetic is
    # elementwise: FlopCounterMode counts matrix products and convolutions only);
    # the same arithmetic under every setting: counted once, uncompiled.
    optim = state.apply('+'.join(k for k in args.speed[0].split('+')
                                 if k != 'compile'))
    counter = flop_counter()
    flop_marks = []
    hooks[:] = [lambda: flop_marks.append(counter.get_total_flops())]
    with counter:
        model.forward_backward(data, optim)
    optim.zero_grad()
    total = counter.get_total_flops()
    flops = dict(source=flop_marks[0], mixed=flop_marks[1] - flop_marks[0],
                 plugin=flop_marks[-1] - flop_marks[1], update=0)
    out.update(runs=runs, flops=total, segment_flops=flops)
    return out


def matmul_peak(device_name: str) -> dict:
    """The device's attainable matrix-product rate: bf16 8192^2 products on CUDA,
    fp32 1024^2 on the CPU (with this process's threads); the best of the
    repetitions, in TFLOP/s."""
    import torch
    device = torch.device(device_name)
    cuda = device.type == 'cuda'
    dtype, n, reps, inner = ((torch.bfloat16, 8192, 20, 10) if cuda else
                             (torch.float32, 1024, 10, 1))
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device, dtype)
    b = torch.randn(n, n, generator=g).to(device, dtype)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    for _ in range(3):
        a @ b
    sync()
    best = best_cpu = 0.0
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(inner):
            a @ b
        sync()
        flop = inner * 2 * n**3
        best = max(best, flop / (time.perf_counter() - t0))
        best_cpu = max(best_cpu, flop / max(time.process_time() - c0, 1e-9))
    return dict(tflops=best / 1e12, tflops_cpu=best_cpu / 1e12,
                dtype=str(dtype).replace('torch.', ''), n=n, device=device.type,
                source='measured')


def _child(args, variant: str, measure: str, speeds) -> dict:
    return run_child([sys.executable, osp.abspath(__file__), '--variant', variant,
                      '--measure', measure, '--model', args.model,
                      '--size', *map(str, args.size), '--batch', str(args.batch),
                      '--steps', str(args.steps), '--warmup', str(args.warmup),
                      '--speed', *speeds, '--speed-rounds', str(args.speed_rounds),
                      '--compile-backend', args.compile_backend,
                      '--device', args.device] + (['--amp'] if args.amp else []),
                     variant, measure)


def measure_peak(args) -> dict:
    """The matrix-product peak of ``--peak-tflops`` or measured in a fresh process."""
    if args.peak_tflops:
        return dict(tflops=args.peak_tflops, source='given', device=args.device,
                    dtype='-', n=None)
    return run_child([sys.executable, osp.abspath(__file__), '--variant', 'daformer',
                      '--measure', 'peak', '--device', args.device], 'peak', 'peak')


def _ratio(a, b):
    return a / b if a is not None and b else None


def summarise(results: dict, memory: dict, rows: dict, peak: Optional[dict] = None
              ) -> dict:
    """Per row (``rows``: name -> (variant, speed), in order; the first variant and
    the first speed are the bases): step time (per round the median step, then the
    least disturbed round; and the median over the rounds), its parts, FLOPs,
    achieved TFLOP/s and fraction of ``peak``, peak memory and the ratios.

    ``time_ratio`` (and ``flop_ratio``, ``mem_ratio``, ``predicted_ratio``) are over
    the first variant under the same speed setting; ``speed_ratio`` over the same
    variant under the first setting (None where that row is missing).
    ``predicted_ratio`` is the time ratio the FLOPs predict: the baseline's step plus
    the variant's extra FLOPs at the rate (s/GFLOP) of the baseline's own network
    passes (source and mixed groups), over the baseline's step. ``plugin_rate_x`` is
    the plug-in groups' s/GFLOP over that baseline rate (1.0: the extra work runs
    exactly as efficiently as the baseline's network passes)."""
    summary = {}
    nan = float('nan')
    for name, (variant, speed) in rows.items():
        runs = results.get(name) or []
        mem = memory.get(name) or [dict(peak_mb=nan, state_mb=nan)]
        if not runs:
            continue
        best = min(runs, key=lambda r: statistics.median(r['times']))
        parts = {k: statistics.median(seg[k] for seg in best['segments'])
                 for k in SEGMENTS}
        step_s = statistics.median(best['times'])
        median_s = statistics.median(statistics.median(r['times']) for r in runs)
        summary[name] = dict(
            variant=variant, speed=speed, step_s=step_s, parts=parts,
            step_s_median=median_s, rounds=len(runs), flops=best['flops'],
            segment_flops=best['segment_flops'],
            tflops=best['flops'] / step_s / 1e12,
            tflops_median=best['flops'] / median_s / 1e12,
            peak_mb=min(m['peak_mb'] for m in mem), state_mb=mem[0]['state_mb'],
            params=best['params'], trainable=best['trainable'])
        if runs[0].get('cpu_times'):  # this process's CPU time: what load cannot add
            cpu_s = statistics.median(statistics.median(r['cpu_times']) for r in runs)
            summary[name].update(cpu_s=cpu_s, tflops_cpu=best['flops'] / cpu_s / 1e12)
            if peak and peak.get('tflops_cpu'):
                summary[name]['peak_fraction_cpu'] = (summary[name]['tflops_cpu']
                                                      / peak['tflops_cpu'])
        if peak and peak.get('tflops'):
            summary[name].update(
                peak_fraction=summary[name]['tflops'] / peak['tflops'],
                peak_fraction_median=summary[name]['tflops_median'] / peak['tflops'])
    variants = list(dict.fromkeys(v for v, _ in rows.values()))
    speeds = list(dict.fromkeys(s for _, s in rows.values()))
    for name, s in summary.items():
        b = summary.get(row_name(variants[0], s['speed']))
        d = summary.get(row_name(s['variant'], speeds[0]))
        s.update(speed_ratio=_ratio(s['step_s'], d and d['step_s']),
                 speed_ratio_median=_ratio(s['step_s_median'], d and d['step_s_median']),
                 speed_ratio_cpu=_ratio(s.get('cpu_s'), d and d.get('cpu_s')))
        if b is None:
            s.update(time_ratio=None, time_ratio_median=None, flop_ratio=None,
                     predicted_ratio=None, plugin_rate_x=None, mem_ratio=None)
            continue
        net_s = b['parts']['source'] + b['parts']['mixed']
        net_flops = b['segment_flops']['source'] + b['segment_flops']['mixed']
        rate = net_s / net_flops
        extra = s['flops'] - b['flops']
        plugin_flops = s['segment_flops']['plugin']
        s.update(time_ratio=s['step_s'] / b['step_s'],
                 time_ratio_median=s['step_s_median'] / b['step_s_median'],
                 flop_ratio=s['flops'] / b['flops'],
                 predicted_ratio=(b['step_s'] + extra * rate) / b['step_s'],
                 plugin_rate_x=(s['parts']['plugin'] / plugin_flops / rate
                                if plugin_flops else nan),
                 mem_ratio=s['peak_mb'] / b['peak_mb'])
    return summary


def _f(value, fmt: str, width: int) -> str:
    return f'{value:>{width}{fmt}}' if value is not None else f'{"-":>{width}}'


def print_table(summary: dict, args, peak: Optional[dict]) -> None:
    print(f'\nmodel={args.model} size={args.size} batch={args.batch} '
          f'device={args.device} amp={args.amp} '
          f'threads={os.environ.get("OMP_NUM_THREADS", "?")}')
    if peak:
        print(f"peak: {peak['tflops']:.3f} TFLOP/s ({peak['source']}"
              + (f", {peak['dtype']} {peak['n']}x{peak['n']} matrix product on "
                 f"{peak['device']}" if peak['source'] == 'measured' else '') + ')')
    width = max([13] + [len(n) + 1 for n in summary])
    cpu = args.device == 'cpu'
    print(f'{"row":<{width}}{"step s":>8}{"med s":>8}{"GFLOP":>8}{"TFLOP/s":>8}'
          f'{"peak%":>6}{"peak MB":>8}{"state MB":>9}{"time x":>7}{"med x":>7}'
          f'{"FLOP x":>7}{"pred x":>7}{"rate x":>7}{"mem x":>6}{"speed x":>8}'
          + (f'{"cpu s":>7}{"cpu x":>7}{"cpu pk%":>8}' if cpu else ''))
    for v, s in summary.items():
        frac = s.get('peak_fraction')
        print(f'{v:<{width}}{s["step_s"]:>8.3f}{s["step_s_median"]:>8.3f}'
              f'{s["flops"] / 1e9:>8.2f}{s["tflops"]:>8.4f}'
              + _f(None if frac is None else 100 * frac, '.1f', 6)
              + f'{s["peak_mb"]:>8.0f}{s["state_mb"]:>9.0f}'
              + _f(s['time_ratio'], '.2f', 7) + _f(s['time_ratio_median'], '.2f', 7)
              + _f(s['flop_ratio'], '.2f', 7) + _f(s['predicted_ratio'], '.2f', 7)
              + _f(s['plugin_rate_x'], '.2f', 7) + _f(s['mem_ratio'], '.2f', 6)
              + _f(s['speed_ratio'], '.3f', 8)
              + (_f(s.get('cpu_s'), '.3f', 7) + _f(s.get('speed_ratio_cpu'), '.3f', 7)
                 + _f(100 * s['peak_fraction_cpu'] if 'peak_fraction_cpu' in s
                      else None, '.1f', 8) if cpu else ''))
    print('(step s: least disturbed of the rounds; med s: median over the rounds; '
          'time x: over the first variant, same speed setting; speed x: over the same '
          'variant, first speed setting' + ('; cpu s: the median step\'s CPU time '
                                            'of the process, cpu x its ratio, cpu pk%: '
                                            'rate by CPU time over the peak\'s'
                                            if cpu else '') + ')')
    print('\nstep parts, seconds (GFLOP): source group + EMA | mixed group + pseudo '
          'labels | plug-in groups | optimiser update')
    for v, s in summary.items():
        print(f'{v:<{width}}' + ' | '.join(
            f'{s["parts"][k]:.3f} ({s["segment_flops"][k] / 1e9:.1f})'
            for k in SEGMENTS))


def _write(args, **payload) -> None:
    if args.out:
        from mmseg_dida.utils.atomic_files import atomic_write_text
        atomic_write_text(args.out, json.dumps(dict(args=vars(args), **payload),
                                               indent=1))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', choices=['tiny', 'daformer'], default='tiny')
    p.add_argument('--size', type=int, nargs=2, default=[128, 256])
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--repeats', type=int, default=2,
                   help='rounds of fresh processes (each times every speed setting)')
    p.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
    p.add_argument('--speed', nargs='+', type=_speed_arg, default=['default'],
                   metavar='SETTING',
                   help='speed settings timed side by side in each process: default, '
                   'or keys joined by + (' + ', '.join(SPEED_KEYS) + ')')
    p.add_argument('--speed-rounds', type=int, default=1,
                   help='rounds over the speed settings within each process')
    p.add_argument('--compile-backend', default='inductor',
                   help="torch.compile backend of the 'compile' key")
    p.add_argument('--peak-tflops', type=float, default=None,
                   help='the device peak (TFLOP/s) instead of measuring it')
    p.add_argument('--device', default='cpu')
    p.add_argument('--amp', action='store_true',
                   help='mixed precision (CUDA: fp16, dynamic loss scaling; CPU: bf16)')
    p.add_argument('--only', choices=['time', 'memory'], default=None,
                   help='measure only this (e.g. memory at sizes too slow to time)')
    p.add_argument('--out', default=None, help='write the results as JSON')
    p.add_argument('--variant', help=argparse.SUPPRESS)
    p.add_argument('--measure', choices=['time', 'memory', 'peak'],
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    args.speed = list(dict.fromkeys(args.speed))
    if args.variant:  # child process
        result = (matmul_peak(args.device) if args.measure == 'peak'
                  else run_variant(args))
        print('RESULT ' + json.dumps(result))
        return
    rows = {row_name(v, s): (v, s) for v in args.variants for s in args.speed}
    peak = measure_peak(args) if args.only != 'memory' else None
    if peak:
        print(f"peak {peak['tflops']:.3f} TFLOP/s ({peak['source']}, {peak['dtype']} "
              f"on {peak['device']})", flush=True)
    results = {name: [] for name in rows}
    memory = {name: [] for name in rows}
    summary = {}
    for r in range(args.repeats):
        for v in args.variants:
            done = []
            if args.only != 'memory':
                out = _child(args, v, 'time', args.speed)
                for speed, runs in out['runs'].items():
                    for run in runs:
                        results[row_name(v, speed)].append(dict(
                            run, flops=out['flops'], segment_flops=out['segment_flops'],
                            params=out['params'], trainable=out['trainable']))
                    done.append(f'{speed} median step '
                                f'{statistics.median(runs[-1]["times"]):.3f} s')
            if args.only != 'time':
                for speed in args.speed:
                    m = _child(args, v, 'memory', [speed])
                    memory[row_name(v, speed)].append(m)
                    done.append(f'{speed} peak {m["peak_mb"]:.0f} MB')
            print(f'round {r} {v}: ' + ', '.join(done), flush=True)
            if args.only != 'memory':  # what is measured so far, should the run stop
                summary = summarise(results, {} if args.only == 'time' else memory,
                                    rows, peak)
                _write(args, peak=peak, summary=summary, runs=results, memory=memory,
                       partial=True)
    if args.only == 'memory':
        base = {s: memory[row_name(args.variants[0], s)][0]['peak_mb']
                for s in args.speed}
        print(f'\nmodel={args.model} size={args.size} batch={args.batch} (memory only)')
        width = max(len(n) for n in rows)
        for name, (v, speed) in rows.items():
            runs = memory[name]
            peak_mb = min(m['peak_mb'] for m in runs)
            print(f'{name:<{width}} peak {peak_mb:8.0f} MB  state {runs[0]["state_mb"]:8.0f} '
                  f'MB  mem x {peak_mb / base[speed]:.2f}')
        _write(args, memory=memory)
        return
    print_table(summary, args, peak)
    _write(args, peak=peak, summary=summary, runs=results, memory=memory)


if __name__ == '__main__':
    main()

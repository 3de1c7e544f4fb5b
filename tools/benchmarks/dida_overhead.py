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
  (:mod:`mmseg_dida.utils.flops`; torch's own formula counts MiT's depthwise
  convolutions' weight gradients channels-times too high), split the same way;
* the time ratio the FLOPs predict (``pred x``): the baseline's step plus the
  variant's extra FLOPs at the rate (seconds per GFLOP) of the baseline's own network
  passes. The raw FLOP ratio overstates the expected time, because the baseline's
  step also does work the counter does not see (EMA, augmentation, ClassMix, the
  accuracy metric, the optimiser, per-operator overhead) which DiDA does not repeat;
  ``rate x``: the plug-in groups' seconds per GFLOP over that baseline rate (1.0:
  DiDA's extra work runs exactly as efficiently as the baseline's own passes; more
  would be wasted work);
* peak memory (``peak_mb``): on CUDA ``torch.cuda.max_memory_allocated``; on CPU the
  process's peak resident set size (``getrusage`` ``ru_maxrss``) minus its resident
  size just before the model is built, with glibc's malloc told to serve every block
  of 64 KiB or more by mmap (``MALLOC_MMAP_THRESHOLD_=65536``), so freed tensors go
  back to the system at once and the resident size follows the live tensors. Both
  count parameters, buffers, gradients and optimiser state of student, teacher and
  ImageNet model plus the activations: what a GPU's peak allocated memory counts.
  ``state_mb``: the part that lives between steps (parameters, buffers, optimiser
  state), counted from the tensors themselves.

Usage::

    python tools/benchmarks/dida_overhead.py --model tiny --size 128 256 --batch 2
    python tools/benchmarks/dida_overhead.py --model daformer --size 256 256 --batch 2
    python tools/benchmarks/dida_overhead.py --model daformer --size 512 512 --device cuda \
        --amp --only time --repeats 3 --variants daformer dida
"""
import argparse
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VARIANTS = dict(
    daformer=None,
    dida=dict(type='DiDA'),
    dida_perdom=dict(type='DiDA', memory_saving='per_domain'),
    dida_gprime=dict(type='DiDA', memory_saving='g_prime'),
    dida_enc=dict(type='DiDA', memory_saving='encoders'),
)


def _rss_mb() -> float:
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE') / 2**20


def persistent_bytes(model, optimizer) -> int:
    """Bytes of the tensors that live between steps: parameters, buffers, optimiser
    state (each storage once)."""
    import torch
    seen, total = set(), 0
    tensors = list(model.parameters()) + list(model.buffers())
    for state in optimizer.state.values():
        tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    for t in tensors:
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


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


def synthetic_batch(n, size, num_classes, seed=0):
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    h, w = size

    def packed(labelled):
        inputs, samples = [], []
        for _ in range(n):
            inputs.append(torch.randint(0, 256, (3, h, w), generator=g,
                                        dtype=torch.uint8))
            s = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                            pad_shape=(h, w)))
            if labelled:
                s.gt_sem_seg = PixelData(data=torch.randint(
                    0, num_classes, (1, h, w), generator=g))
            samples.append(s)
        return dict(inputs=inputs, data_samples=samples)

    return dict(source=packed(True), target=packed(False))


SEGMENTS = ('source', 'mixed', 'plugin', 'update')


def _after_each_group(model, hooks: list) -> None:
    """Call every function in ``hooks`` after each loss group's backward pass of
    DACS (the list may be changed later): DACS asks for the next group right after
    it has back-propagated the last one."""
    loss_groups = model.loss_groups

    def instrumented(ctx):
        for group in loss_groups(ctx):
            yield group
            for hook in hooks:
                hook()

    model.loss_groups = instrumented


def _segments(start: float, marks: list, end: float) -> dict:
    """Durations of the step's parts from the group stamps: source group (with the
    EMA update), mixed group (with pseudo-labelling and ClassMix), all plug-in
    groups, and the optimiser update."""
    return dict(source=marks[0] - start, mixed=marks[1] - marks[0],
                plugin=marks[-1] - marks[1], update=end - marks[-1])


def run_variant(args) -> dict:
    """One variant in this process: build, warm up, then either time the step (and
    count its FLOPs) or measure its peak memory."""
    import torch
    from mmengine.config import ConfigDict
    from mmengine.optim import OptimWrapper
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import mmseg_dida  # noqa: F401
    from mmseg_dida.utils.flops import flop_counter

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
    rss0 = _rss_mb()
    model = MODELS.build(uda)
    model.init_weights()
    model.to(device).train()
    adamw = torch.optim.AdamW(model.parameters(), lr=6e-5, weight_decay=0.01)
    if args.amp:  # CUDA: fp16 with dynamic loss scaling (tools/train.py --amp)
        from mmengine.optim import AmpOptimWrapper
        optim = AmpOptimWrapper(optimizer=adamw, loss_scale='dynamic',
                                dtype='float16' if device.type == 'cuda' else None)
    else:
        optim = OptimWrapper(adamw)
    data = synthetic_batch(args.batch, args.size, seg.decode_head.num_classes)
    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize()

    marks: list = []
    hooks = [sync, lambda: marks.append(time.perf_counter())]
    _after_each_group(model, hooks)

    for _ in range(args.warmup):
        model.train_step(data, optim)
    sync()
    out = dict(variant=args.variant,
               params=sum(p.numel() for p in model.parameters()),
               trainable=sum(p.numel() for p in model.parameters() if p.requires_grad))
    if args.measure == 'memory':
        for _ in range(2):
            model.train_step(data, optim)
        sync()
        if device.type == 'cuda':
            peak = (torch.cuda.max_memory_allocated() - mem0) / 2**20
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0
        out.update(peak_mb=peak,
                   state_mb=persistent_bytes(model, optim.optimizer) / 2**20)
        return out
    times, segments = [], []
    for _ in range(args.steps):
        marks.clear()
        t0 = time.perf_counter()
        model.train_step(data, optim)
        sync()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        segments.append(_segments(t0, marks, t1))
    # FLOPs of one step, split like the time (the EMA and optimiser arithmetic is
    # elementwise: FlopCounterMode counts matrix products and convolutions only).
    counter = flop_counter()
    flop_marks = []
    hooks[:] = [lambda: flop_marks.append(counter.get_total_flops())]
    with counter:
        model.forward_backward(data, optim)
    optim.zero_grad()
    total = counter.get_total_flops()
    flops = dict(source=flop_marks[0], mixed=flop_marks[1] - flop_marks[0],
                 plugin=flop_marks[-1] - flop_marks[1], update=0)
    out.update(times=times, segments=segments, flops=total, segment_flops=flops)
    return out


def run_child(cmd, variant: str, measure: str) -> dict:
    """Run one measurement in a fresh process (``cmd`` ends in this variant's options)
    and return the JSON it prints after ``RESULT``; stop with its stderr if it fails."""
    env = dict(os.environ)
    if measure == 'memory':
        # Freed blocks go back to the system at once, so that the resident size
        # follows the live tensors (slows allocation down: never used for timing).
        env['MALLOC_MMAP_THRESHOLD_'] = '65536'
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    line = [x for x in out.stdout.splitlines() if x.startswith('RESULT ')]
    if out.returncode or not line:
        sys.exit(f'{variant} ({measure}) failed:\n{out.stderr[-3000:]}')
    return json.loads(line[0][7:])


def _child(args, variant: str, measure: str) -> dict:
    return run_child([sys.executable, osp.abspath(__file__), '--variant', variant,
                      '--measure', measure, '--model', args.model,
                      '--size', *map(str, args.size), '--batch', str(args.batch),
                      '--steps', str(args.steps), '--warmup', str(args.warmup),
                      '--device', args.device] + (['--amp'] if args.amp else []),
                     variant, measure)


def summarise(results: dict, memory: dict, base: str) -> dict:
    """Per variant: step time (per round the median step, then the least disturbed
    round; and the median over the rounds), its parts, FLOPs, peak memory and the
    ratios to ``base``.

    ``predicted_ratio`` is the time ratio the FLOPs predict: the baseline's step plus
    the variant's extra FLOPs done at the rate (s/GFLOP) of the baseline's own
    network passes (source and mixed groups), over the baseline's step.
    ``plugin_rate_x`` is the plug-in groups' s/GFLOP over that baseline rate (1.0: the
    extra work runs exactly as efficiently as the baseline's network passes)."""
    summary = {}
    for v, runs in results.items():
        best = min(runs, key=lambda r: statistics.median(r['times']))
        parts = {k: statistics.median(seg[k] for seg in best['segments'])
                 for k in SEGMENTS}
        summary[v] = dict(step_s=statistics.median(best['times']), parts=parts,
                          step_s_median=statistics.median(
                              statistics.median(r['times']) for r in runs),
                          rounds=len(runs),
                          flops=best['flops'], segment_flops=best['segment_flops'],
                          peak_mb=min(m['peak_mb'] for m in memory[v]),
                          state_mb=memory[v][0]['state_mb'],
                          params=best['params'], trainable=best['trainable'])
    b = summary[base]
    net_s = b['parts']['source'] + b['parts']['mixed']
    net_flops = b['segment_flops']['source'] + b['segment_flops']['mixed']
    rate = net_s / net_flops
    for s in summary.values():
        extra = s['flops'] - b['flops']
        plugin_flops = s['segment_flops']['plugin']
        s.update(time_ratio=s['step_s'] / b['step_s'],
                 time_ratio_median=s['step_s_median'] / b['step_s_median'],
                 flop_ratio=s['flops'] / b['flops'],
                 predicted_ratio=(b['step_s'] + extra * rate) / b['step_s'],
                 plugin_rate_x=(s['parts']['plugin'] / plugin_flops / rate
                                if plugin_flops else float('nan')),
                 mem_ratio=s['peak_mb'] / b['peak_mb'])
    return summary


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', choices=['tiny', 'daformer'], default='tiny')
    p.add_argument('--size', type=int, nargs=2, default=[128, 256])
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
    p.add_argument('--device', default='cpu')
    p.add_argument('--amp', action='store_true',
                   help='mixed precision (CUDA: fp16, dynamic loss scaling; CPU: bf16)')
    p.add_argument('--only', choices=['time', 'memory'], default=None,
                   help='measure only this (e.g. memory at sizes too slow to time)')
    p.add_argument('--out', default=None, help='write the results as JSON')
    p.add_argument('--variant', help=argparse.SUPPRESS)
    p.add_argument('--measure', choices=['time', 'memory'], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:  # child process
        print('RESULT ' + json.dumps(run_variant(args)))
        return
    results = {v: [] for v in args.variants}
    memory = {v: [] for v in args.variants}
    for r in range(args.repeats):
        for v in args.variants:
            if args.only != 'memory':
                results[v].append(_child(args, v, 'time'))
            if args.only != 'time':
                memory[v].append(_child(args, v, 'memory'))
            done = []
            if results[v]:
                done.append('median step '
                            f'{statistics.median(results[v][-1]["times"]):.3f} s')
            if memory[v]:
                done.append(f'peak {memory[v][-1]["peak_mb"]:.0f} MB')
            print(f'round {r} {v}: ' + ', '.join(done), flush=True)
    if args.only == 'memory':
        base = memory[args.variants[0]][0]['peak_mb']
        print(f'\nmodel={args.model} size={args.size} batch={args.batch} (memory only)')
        for v, runs in memory.items():
            peak = min(m['peak_mb'] for m in runs)
            print(f'{v:<13} peak {peak:8.0f} MB  state {runs[0]["state_mb"]:8.0f} MB  '
                  f'mem x {peak / base:.2f}')
        if args.out:
            from mmseg_dida.utils.atomic_files import atomic_write_text
            atomic_write_text(args.out, json.dumps(dict(args=vars(args), memory=memory),
                                                   indent=1))
        return
    if args.only == 'time':
        memory = {v: [dict(peak_mb=float('nan'), state_mb=float('nan'))]
                  for v in args.variants}
    summary = summarise(results, memory, args.variants[0])
    print(f'\nmodel={args.model} size={args.size} batch={args.batch} '
          f'device={args.device} threads={os.environ.get("OMP_NUM_THREADS", "?")}')
    print(f'{"variant":<13}{"step s":>8}{"med s":>8}{"GFLOP":>8}{"peak MB":>8}'
          f'{"state MB":>9}{"time x":>7}{"med x":>7}{"FLOP x":>7}{"pred x":>7}'
          f'{"rate x":>7}{"mem x":>6}')
    for v, s in summary.items():
        print(f'{v:<13}{s["step_s"]:>8.3f}{s["step_s_median"]:>8.3f}'
              f'{s["flops"] / 1e9:>8.2f}{s["peak_mb"]:>8.0f}{s["state_mb"]:>9.0f}'
              f'{s["time_ratio"]:>7.2f}{s["time_ratio_median"]:>7.2f}'
              f'{s["flop_ratio"]:>7.2f}{s["predicted_ratio"]:>7.2f}'
              f'{s["plugin_rate_x"]:>7.2f}{s["mem_ratio"]:>6.2f}')
    print(f'(step s: least disturbed of {args.repeats} round(s); med s: median over '
          'the rounds)')
    print('\nstep parts, seconds (GFLOP): source group + EMA | mixed group + pseudo '
          'labels | plug-in groups | optimiser update')
    for v, s in summary.items():
        print(f'{v:<13}' + ' | '.join(
            f'{s["parts"][k]:.3f} ({s["segment_flops"][k] / 1e9:.1f})'
            for k in SEGMENTS))
    if args.out:
        from mmseg_dida.utils.atomic_files import atomic_write_text
        atomic_write_text(args.out, json.dumps(dict(args=vars(args), summary=summary,
                                                    runs=results, memory=memory),
                                               indent=1))


if __name__ == '__main__':
    main()

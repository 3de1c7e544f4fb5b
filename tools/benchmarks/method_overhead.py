"""Step time and peak memory of HRDA, MIC(HRDA) and each +DiDA against DAFormer, side by
side, on the procedural benchmark's configs (the models they train, at their own
resolution: DAFormer 128x256, the HRDA family 256x512; batch 2, synthetic images).

Each variant runs in fresh processes (one timing it, one measuring its peak memory, as
``dida_overhead.py`` does and with its helpers), the variants are interleaved over
``--repeats`` rounds so that load from other processes hits all alike, and the least
disturbed round counts. Per variant: the median step time, its parts (source group +
EMA, mixed group + pseudo labels (HRDA: LR + overlapping HR windows of the teacher),
plug-in groups, optimiser update), the FLOPs of one step (matrix products and
convolutions, ``mmseg_dida.apis.flops``), the peak memory (CPU: peak resident size
with every freed block returned to the system at once; CUDA: max allocated) and the
ratios of each to DAFormer.

On a shared CPU the wall time of a low-priority process mostly measures its share of
the cores; the step's CPU time (``time.process_time``, one OpenMP thread) does not, so
on CPU the ratios are reported for both and the CPU-time ones are the measurement.

Usage::

    python tools/benchmarks/method_overhead.py                 # all variants
    python tools/benchmarks/method_overhead.py --variants daformer hrda --repeats 1
"""
import argparse
import json
import os
import os.path as osp
import resource
import statistics
import sys
import time

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

#: variant -> (config, (h, w) of its training images)
VARIANTS = {
    'daformer': ('configs/benchmark/daformer_mit_tiny_procedural.py', (128, 256)),
    'daformer_dida': ('configs/dida/daformer_mit_tiny_procedural_dida.py', (128, 256)),
    'hrda': ('configs/benchmark/hrda_mit_tiny_procedural.py', (256, 512)),
    'mic_hrda': ('configs/benchmark/mic_hrda_mit_tiny_procedural.py', (256, 512)),
    'hrda_dida': ('configs/dida/hrda_mit_tiny_procedural_dida.py', (256, 512)),
    'mic_hrda_dida': ('configs/dida/mic_hrda_mit_tiny_procedural_dida.py', (256, 512)),
}


def block_labels(batch: dict, size, num_classes: int, seed: int) -> dict:
    """Replace the synthetic source labels by 8 x 16 blocks of classes (pixel-random
    labels would make every majority vote and every pseudo label degenerate)."""
    import torch
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(seed)
    for sample in batch['source']['data_samples']:
        blocks = torch.randint(0, num_classes, (1, 1, 8, 16), generator=g).float()
        sample.gt_sem_seg.data = F.interpolate(blocks, size=tuple(size),
                                               mode='nearest')[0].long()
    return batch


def run_variant(args) -> dict:
    import torch
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import mmseg_dida  # noqa: F401
    from mmseg_dida.apis.flops import flop_counter

    init_default_scope('mmseg')
    torch.manual_seed(0)
    device = torch.device(args.device)
    path, size = VARIANTS[args.variant]
    cfg = Config.fromfile(osp.join(REPO, path))
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
        mem0 = torch.cuda.memory_allocated()
    rss0 = rss_mb()
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.to(device).train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    data = block_labels(synthetic_batch(args.batch, size, 19), size, 19, 0)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize()

    marks: list = []
    cpu_marks: list = []
    hooks = [sync, lambda: marks.append(time.perf_counter()),
             lambda: cpu_marks.append(time.process_time())]
    after_each_group(model, hooks)
    for _ in range(args.warmup):
        model.train_step(data, optim)
    sync()
    out = dict(variant=args.variant, size=list(size),
               params=sum(p.numel() for p in model.parameters()))
    if args.measure == 'memory':
        for _ in range(2):
            model.train_step(data, optim)
        sync()
        if device.type == 'cuda':
            peak = (torch.cuda.max_memory_allocated() - mem0) / 2**20
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0
        out.update(peak_mb=peak, state_mb=persistent_bytes(model, optim.optimizer) / 2**20)
        return out
    timed = timed_steps(model, data, optim, args.steps, sync, marks, cpu_marks)
    counter = flop_counter()
    with counter:
        model.forward_backward(data, optim)
    optim.zero_grad()
    out.update(timed, flops=counter.get_total_flops())
    return out


def _child(args, variant: str, measure: str) -> dict:
    return run_child([sys.executable, osp.abspath(__file__), '--variant', variant,
                      '--measure', measure, '--batch', str(args.batch),
                      '--steps', str(args.steps), '--warmup', str(args.warmup),
                      '--device', args.device], variant, measure)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--steps', type=int, default=4)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', default=None, help='write the results as JSON')
    p.add_argument('--variant', help=argparse.SUPPRESS)
    p.add_argument('--measure', choices=['time', 'memory'], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        print('RESULT ' + json.dumps(run_variant(args)))
        return
    if args.variants[0] != 'daformer':
        args.variants = ['daformer'] + [v for v in args.variants if v != 'daformer']
    runs = {v: [] for v in args.variants}
    memory = {v: [] for v in args.variants}
    for r in range(args.repeats):
        for v in args.variants:
            runs[v].append(_child(args, v, 'time'))
            memory[v].append(_child(args, v, 'memory'))
            print(f'round {r} {v}: median step '
                  f'{statistics.median(runs[v][-1]["times"]):.3f} s (CPU '
                  f'{statistics.median(runs[v][-1]["cpu_times"]):.3f} s), peak '
                  f'{memory[v][-1]["peak_mb"]:.0f} MB', flush=True)
    summary = {}
    for v in args.variants:
        best = min(runs[v], key=lambda x: statistics.median(x['times']))
        cpu = min(runs[v], key=lambda x: statistics.median(x['cpu_times']))
        summary[v] = dict(
            size=best['size'], params=best['params'],
            step_s=statistics.median(best['times']),
            cpu_s=statistics.median(cpu['cpu_times']), flops=best['flops'],
            parts={k: statistics.median(s[k] for s in cpu['cpu_segments'])
                   for k in SEGMENTS},
            peak_mb=min(m['peak_mb'] for m in memory[v]),
            state_mb=memory[v][0]['state_mb'])
    base = summary['daformer']
    print(f'\nprocedural configs, batch {args.batch}, device={args.device}, '
          f'threads={os.environ.get("OMP_NUM_THREADS", "?")}, '
          f'{args.repeats} rounds x {args.steps} steps')
    print(f'{"variant":<15}{"input":>9}{"params":>9}{"wall s":>8}{"cpu s":>8}'
          f'{"GFLOP":>8}{"peak MB":>8}{"state MB":>9}{"wall x":>7}{"cpu x":>7}'
          f'{"FLOP x":>7}{"mem x":>6}')
    for v, s in summary.items():
        s.update(time_ratio=s['step_s'] / base['step_s'],
                 cpu_ratio=s['cpu_s'] / base['cpu_s'],
                 flop_ratio=s['flops'] / base['flops'],
                 mem_ratio=s['peak_mb'] / base['peak_mb'])
        print(f'{v:<15}{"x".join(map(str, s["size"])):>9}{s["params"] / 1e6:>8.2f}M'
              f'{s["step_s"]:>8.3f}{s["cpu_s"]:>8.3f}{s["flops"] / 1e9:>8.2f}'
              f'{s["peak_mb"]:>8.0f}{s["state_mb"]:>9.0f}{s["time_ratio"]:>7.2f}'
              f'{s["cpu_ratio"]:>7.2f}{s["flop_ratio"]:>7.2f}{s["mem_ratio"]:>6.2f}')
    print('\nstep parts, CPU seconds: source group + EMA | mixed group + pseudo labels | '
          'plug-in groups | optimiser update')
    for v, s in summary.items():
        print(f'{v:<15}' + ' | '.join(f'{s["parts"][k]:.3f}' for k in SEGMENTS))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(args=vars(args), summary=summary, runs=runs, memory=memory),
                      f, indent=1)


if __name__ == '__main__':
    main()

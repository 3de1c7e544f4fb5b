"""Overhead of DiDA on a DAFormer (DACS) training step: time, peak memory, FLOPs.

Every variant runs in its own fresh process (so that its peak memory is its own), the
variants are interleaved over ``--repeats`` rounds (so that load from other processes
on the machine hits all of them alike), and the same synthetic batch and model config
are used by all. Per variant it reports:

* step time: per round the median of the timed steps (after ``--warmup``), then the
  minimum over rounds (load from other processes only ever adds time);
* FLOPs of one step (forward + backward of every loss group, EMA excluded), counted
  with ``torch.utils.flop_counter.FlopCounterMode`` -- the arithmetic the step must do;
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
    dida_cp=dict(type='DiDA', memory_saving='g_prime'),
    dida_chunk=dict(type='DiDA', memory_saving='chunked'),
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


def run_variant(args) -> dict:
    """One variant in this process: build, warm up, time, count FLOPs."""
    import torch
    from mmengine.config import ConfigDict
    from mmengine.optim import OptimWrapper
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    from torch.utils.flop_counter import FlopCounterMode

    import mmseg_dida  # noqa: F401

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
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=6e-5,
                                           weight_decay=0.01))
    data = synthetic_batch(args.batch, args.size, seg.decode_head.num_classes)

    def step():
        model.train_step(data, optim)
        if device.type == 'cuda':
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if device.type == 'cuda':
        peak = (torch.cuda.max_memory_allocated() - mem0) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0
    state = persistent_bytes(model, optim.optimizer) / 2**20
    # FLOPs of the losses' forward + backward (EMA, optimiser arithmetic excluded).
    counter = FlopCounterMode(display=False)
    with counter:
        model.forward_backward(data, optim)
    optim.zero_grad()
    return dict(variant=args.variant, times=times, flops=counter.get_total_flops(),
                peak_mb=peak, state_mb=state,
                params=sum(p.numel() for p in model.parameters()),
                trainable=sum(p.numel() for p in model.parameters() if p.requires_grad))


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
    p.add_argument('--out', default=None, help='write the results as JSON')
    p.add_argument('--variant', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:  # child process
        print('RESULT ' + json.dumps(run_variant(args)))
        return
    results = {v: [] for v in args.variants}
    for r in range(args.repeats):
        for v in args.variants:
            cmd = [sys.executable, osp.abspath(__file__), '--variant', v,
                   '--model', args.model, '--size', *map(str, args.size),
                   '--batch', str(args.batch), '--steps', str(args.steps),
                   '--warmup', str(args.warmup), '--device', args.device]
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                                 env=env)
            line = [x for x in out.stdout.splitlines() if x.startswith('RESULT ')]
            if out.returncode or not line:
                sys.exit(f'{v} failed:\n{out.stderr[-3000:]}')
            results[v].append(json.loads(line[0][7:]))
            print(f'round {r} {v}: median step '
                  f'{statistics.median(results[v][-1]["times"]):.3f} s', flush=True)
    base = args.variants[0]
    summary = {}
    for v, runs in results.items():
        # least-disturbed round: other processes only ever add time
        summary[v] = dict(step_s=min(statistics.median(r['times']) for r in runs),
                          flops=runs[0]['flops'],
                          peak_mb=min(run['peak_mb'] for run in runs),
                          state_mb=runs[0]['state_mb'],
                          params=runs[0]['params'], trainable=runs[0]['trainable'])
    b = summary[base]
    print(f'\nmodel={args.model} size={args.size} batch={args.batch} '
          f'device={args.device} threads={os.environ.get("OMP_NUM_THREADS", "?")}')
    print(f'{"variant":<11}{"step s":>8}{"GFLOP":>9}{"peak MB":>9}{"state MB":>9}'
          f'{"time x":>8}{"FLOP x":>8}{"mem x":>7}')
    for v, s in summary.items():
        s.update(time_ratio=s['step_s'] / b['step_s'],
                 flop_ratio=s['flops'] / b['flops'],
                 mem_ratio=s['peak_mb'] / b['peak_mb'])
        print(f'{v:<11}{s["step_s"]:>8.3f}{s["flops"] / 1e9:>9.2f}{s["peak_mb"]:>9.0f}'
              f'{s["state_mb"]:>9.0f}{s["time_ratio"]:>8.3f}{s["flop_ratio"]:>8.3f}'
              f'{s["mem_ratio"]:>7.3f}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(args=vars(args), summary=summary, runs=results), f, indent=1)


if __name__ == '__main__':
    main()

"""Timing and sizing one training step of a UDA model, shared by the overhead and
memory benchmarks (tools/benchmarks/dida_overhead.py, method_overhead.py,
gpu_memory.py): a synthetic UDA batch, the step's parts timed from the loss groups'
stamps, the bytes that live between steps, and one measurement in a fresh process."""
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

__all__ = ['SEGMENTS', 'rss_mb', 'persistent_bytes', 'synthetic_batch',
           'after_each_group', 'segments', 'timed_steps', 'run_child']


def rss_mb() -> float:
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE') / 2**20


def persistent_bytes(model, *optimizers) -> int:
    """Bytes of the tensors that live between steps: parameters, buffers, optimiser
    state (each storage once)."""
    import torch
    seen, total = set(), 0
    tensors = list(model.parameters()) + list(model.buffers())
    for optimizer in optimizers:
        for state in optimizer.state.values():
            tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    for t in tensors:
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


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


def after_each_group(model, hooks: list) -> None:
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


def segments(start: float, marks: list, end: float) -> dict:
    """Durations of the step's parts from the group stamps: source group (with the
    EMA update), mixed group (with pseudo-labelling and ClassMix), all plug-in
    groups, and the optimiser update."""
    return dict(source=marks[0] - start, mixed=marks[1] - marks[0],
                plugin=marks[-1] - marks[1], update=end - marks[-1])


def timed_steps(model, data, optim, steps: int, sync, marks: list,
                cpu_marks: list = None) -> dict:
    """``steps`` timed training steps: per step its wall time (``times``), its
    process CPU time (``cpu_times``) and its parts from the group stamps that the
    hooks of :func:`after_each_group` append to ``marks`` (``segments``; with
    ``cpu_marks``, the same in CPU time: ``cpu_segments``)."""
    out = dict(times=[], segments=[], cpu_times=[])
    if cpu_marks is not None:
        out['cpu_segments'] = []
    for _ in range(steps):
        marks.clear()
        if cpu_marks is not None:
            cpu_marks.clear()
        c0, t0 = time.process_time(), time.perf_counter()
        model.train_step(data, optim)
        sync()
        t1, c1 = time.perf_counter(), time.process_time()
        out['times'].append(t1 - t0)
        out['cpu_times'].append(c1 - c0)
        out['segments'].append(segments(t0, marks, t1))
        if cpu_marks is not None:
            out['cpu_segments'].append(segments(c0, cpu_marks, c1))
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

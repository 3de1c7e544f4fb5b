"""tools/benchmarks/gpu_memory.py: the live-bytes counter, the fake step against the
real one and against measured allocations, the static part against the analytic count,
and the table."""
import gc
import json
import os.path as osp
from contextlib import nullcontext

import pytest
import torch

from mmseg_dida.apis import memory_estimate as me
from mmseg_dida.apis.step_benchmark import synthetic_batch
from tests.helpers.tools import load_tool

gm = load_tool('tools/benchmarks/gpu_memory.py')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

TINY = osp.join(REPO, 'configs/benchmark/daformer_mit_tiny_procedural.py')
TINY_DIDA = osp.join(REPO, 'configs/dida/daformer_mit_tiny_procedural_dida.py')
SIZE = (64, 128)


# ------------------------------------------------------------------ the counter
def test_live_bytes_count_each_storage_once_until_it_dies():
    with me.LiveStorageBytes(round_to=1) as tracker:
        a = torch.empty(1000, dtype=torch.float32)  # 4000 B
        view = a.view(10, 100)  # same storage
        b = torch.empty(500, dtype=torch.float16)  # 1000 B
        assert tracker.current == 5000 and tracker.peak == 5000
        del a
        assert tracker.current == 5000  # the view keeps the storage alive
        del view
        assert tracker.current == 1000
        c = b * 2  # a new 1000 B
        del b, c
    assert tracker.current == 0 and tracker.peak == 5000


def test_live_bytes_round_like_the_cuda_allocator():
    with me.LiveStorageBytes() as tracker:  # 512 B granularity
        x = torch.empty(3, dtype=torch.uint8)
        y = torch.empty(600, dtype=torch.uint8)
        assert tracker.current == 512 + 1024
        del x, y


def test_live_bytes_track_preexisting_tensors_and_reset_peak():
    w = torch.empty(256)  # 1024 B made outside the mode
    tracker = me.LiveStorageBytes(round_to=1)
    tracker.track([w, w.view(16, 16)])
    assert tracker.current == 1024
    with tracker:
        tmp = torch.empty(256)
        del tmp
    assert tracker.peak == 2048
    tracker.reset_peak()
    assert tracker.peak == 1024
    del w
    gc.collect()
    assert tracker.current == 0


# --------------------------------------------------------------- the fake step
def _fake_modes():
    from torch._subclasses.fake_tensor import FakeTensorMode
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    hybrid = me.HybridFake()
    return fake, hybrid


def test_hybrid_runs_label_arithmetic_for_real_and_bounds_the_rest():
    fake, hybrid = _fake_modes()
    labels = torch.tensor([[0, 1, 255], [1, 1, 0]])
    tracker = me.LiveStorageBytes(round_to=1)
    with fake, tracker, hybrid:  # the counter sits between the fake mode and hybrid
        x = torch.ones(2, 3, 4)  # 24 floats: a small factory, made real
        big = torch.empty(300, 300)  # fake
        assert not isinstance(x, type(big))
        # all-real arithmetic gives real values: Python branches see them
        assert int((labels == 255).sum()) == 1
        assert labels.max().item() == 255
        # a boolean mask over a fake tensor selects everything (upper bound)
        sel = big[big > 0]
        assert sel.shape == (300 * 300,)
        # a scalar read from a fake tensor is assumed
        assert big.sum().item() == 0.5
        assert bool(torch.isfinite(big).all())
        u = torch.unique(big)
        assert u.shape == (16,)
    assert hybrid.assumptions == {'index (upper bound)': 1, 'float read (0.5)': 1,
                                  'bool read (True)': 1, '_unique2 (upper bound)': 1}
    assert tracker.peak >= 2 * 300 * 300 * 4  # big and its selection were counted


def _run(config, device, amp=False, memory_saving=None, with_profiler=False):
    """Peak and static bytes of the second step on ``device`` ('fake' or 'cpu'),
    unrounded; with the profiler, the allocator-level peak of real tensors too."""
    cfg, crop, batch = gm.load_case(config, memory_saving, SIZE, 2)
    model, optim, fake_mode = gm.build(cfg, device, amp)
    data = synthetic_batch(batch, crop, gm.num_classes(cfg))
    prof = []

    def around_step():
        from torch.profiler import ProfilerActivity, profile
        prof.append(profile(activities=[ProfilerActivity.CPU], profile_memory=True))
        return prof[-1]

    out = me.step_peak(model, optim, data, fake_mode, amp, round_to=1,
                       around_step=around_step if with_profiler else nullcontext)
    out.setdefault('assumptions', {})
    if with_profiler:
        out['allocator_peak'] = out['static'] + _allocation_peak(prof[0])
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    trainable = [p for p in model.parameters() if p.requires_grad]
    # parameters + buffers + AdamW's two moments + its 4-byte step per tensor
    out['analytic_static'] = (nbytes(model.parameters()) + nbytes(model.buffers()) +
                              2 * nbytes(trainable) + 4 * len(trainable))
    return out


def _allocation_peak(prof) -> int:
    """Peak of the allocator's running total (every allocation and free the profiler
    saw, in time order) above its value at the start."""
    from torch._C._profiler import _EventType
    allocs = []

    def walk(node):
        if node.tag == _EventType.Allocation:
            allocs.append((node.start_time_ns, node.extra_fields.alloc_size))
        for child in node.children:
            walk(child)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    assert allocs, 'the profiler recorded no allocation'
    current = peak = 0
    for _, size in sorted(allocs):
        current += size
        peak = max(peak, current)
    return peak


def test_estimate_of_the_tiny_daformer_step_equals_the_real_step():
    """The fake step's bytes equal those of the same step on real CPU tensors, the
    static part equals the analytic count, and the allocator's own peak (which also
    sees the temporaries inside operators) is within 10% (measured: +7%)."""
    fake = _run(TINY, 'fake')
    real = _run(TINY, 'cpu', with_profiler=True)
    print('tiny DAFormer 64x128 x 2:', dict(fake=fake, real=real))
    assert fake['peak'] == real['peak']
    assert fake['static'] == real['static'] == real['analytic_static']
    assert real['peak'] <= real['allocator_peak'] <= 1.10 * real['peak']


@pytest.mark.parametrize('mode', ['none', 'encoders'])
def test_estimate_of_the_tiny_dida_step_equals_the_real_step(mode):
    fake = _run(TINY_DIDA, 'fake', memory_saving=mode)
    real = _run(TINY_DIDA, 'cpu', memory_saving=mode)
    print(f'tiny DAFormer + DiDA ({mode}) 64x128 x 2:', dict(fake=fake, real=real))
    assert fake['peak'] == real['peak']
    assert fake['static'] == real['static'] == real['analytic_static']


def test_estimate_of_the_tiny_mic_hrda_dida_step_equals_the_real_step():
    """HRDA (LR context + HR detail crop, scale attention), MIC's masked pass and DiDA
    per domain; HRDA's window count is real, so its crop branch is the real one."""
    config = osp.join(REPO, 'configs/dida/mic_hrda_mit_tiny_procedural_dida.py')
    fake = _run(config, 'fake', memory_saving='per_domain')
    real = _run(config, 'cpu', memory_saving='per_domain')
    print('tiny MIC(HRDA) + DiDA (per_domain) 64x128 x 2:', dict(fake=fake, real=real))
    assert fake['peak'] == real['peak']
    assert fake['static'] == real['static'] == real['analytic_static']
    assert not any(k.startswith('bool read') for k in fake['assumptions'])


def test_amp_estimate_equals_the_real_autocast_step_and_is_smaller():
    fake = _run(TINY, 'fake', amp=True)
    real = _run(TINY, 'cpu', amp=True)
    fp32 = _run(TINY, 'fake')
    print('tiny DAFormer AMP 64x128 x 2:', dict(fake=fake, real=real, fp32=fp32))
    # (measured: 1280 B of 47 MB apart, a few small tensors of other dtypes)
    assert fake['peak'] == pytest.approx(real['peak'], rel=1e-4)
    assert fake['static'] == fp32['static']  # weights and moments stay fp32
    assert fake['peak'] < fp32['peak']


def test_amp_estimate_of_checkpointed_dida_equals_the_real_step():
    """DiDA's 'encoders' mode recomputes g and g' in backward under the same autocast
    dtypes as their forward."""
    fake = _run(TINY_DIDA, 'fake', amp=True, memory_saving='encoders')
    real = _run(TINY_DIDA, 'cpu', amp=True, memory_saving='encoders')
    print('tiny DAFormer + DiDA (encoders) AMP 64x128 x 2:', dict(fake=fake, real=real))
    assert fake['peak'] == pytest.approx(real['peak'], rel=1e-4)


def test_cuda_fp32_ops_follow_cuda_autocast():
    from torch.utils.checkpoint import checkpoint
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    w = torch.randn(8, 8, 3, 3)
    with me.CudaAutocastFp32Ops():
        with torch.autocast('cpu', dtype=torch.float16):
            y = torch.nn.functional.conv2d(x, w, padding=1)
            assert y.dtype == torch.float16  # CUDA: lower precision
            assert torch.softmax(y, 1).dtype == torch.float32  # CUDA: float32
            ln = torch.nn.functional.layer_norm(y.permute(0, 2, 3, 1), (8,))
            assert ln.dtype == torch.float32
            assert torch.nn.functional.gelu(y).dtype == torch.float16  # input's dtype
            assert y.sum().dtype == torch.float32
            # an activation checkpoint recomputes with the same dtypes in backward
            z = checkpoint(lambda t: torch.softmax(torch.nn.functional.conv2d(t, w), 1),
                           x, use_reentrant=False)
        z.sum().backward()
    assert x.grad is not None
    with torch.autocast('cpu', dtype=torch.float16):  # removed on exit
        assert torch.softmax(torch.nn.functional.conv2d(x, w), 1).dtype == torch.float16


# ------------------------------------------------------------------ the table
def test_fits_the_smallest_card_with_headroom():
    gb = 2**30
    assert gm.fits(int(6.95 * gb), 1.1, 0.5) == 11
    assert gm.fits(int(10 * gb), 1.1, 0.5) == 24
    assert gm.fits(int(80 * gb), 1.1, 0.5) is None


def test_training_crop_and_batch_come_from_the_config():
    cfg, crop, batch = gm.load_case(osp.join(REPO, 'configs/hrda/hrda_mitb5_gta2cs.py'))
    assert crop == (1024, 1024) and batch == 2
    assert cfg.model.segmentor.data_preprocessor.size == (1024, 1024)
    assert cfg.model.segmentor.backbone.init_cfg is None  # no pretrained file needed
    cfg, crop, _ = gm.load_case(osp.join(REPO, 'configs/dida/daformer_mitb5_gta2cs_dida.py'),
                                memory_saving='encoders')
    assert crop == (512, 512)
    assert cfg.model.plugins[0].memory_saving == 'encoders'


def test_cli_writes_json_and_markdown(tmp_path):
    out_json, out_md = tmp_path / 'mem.json', tmp_path / 'mem.md'
    rc = gm.main([TINY, TINY_DIDA, '--device', 'fake', '--size', '64', '128',
                  '--batch', '1', '--amp', 'both', '--memory-saving', 'all',
                  '--json', str(out_json), '--markdown', str(out_md)])
    assert rc == 0
    rows = json.loads(out_json.read_text())['rows']
    modes = gm.dida_modes()
    assert len(rows) == 2 + 2 * len(modes)
    assert all(r['peak_bytes'] > r['state_bytes'] > 0 for r in rows)
    table = out_md.read_text()
    assert table.count('\n| ') == 1 + 1 + len(modes)  # header, baseline, DiDA modes
    for mode in modes:
        assert f'`{mode}`' in table
    assert 'Made by `python tools/benchmarks/gpu_memory.py' in table
    # the table again from the saved rows alone
    again = tmp_path / 'again.md'
    assert gm.main(['--render', str(out_json), '--markdown', str(again)]) == 0
    assert again.read_text() == table


def test_auto_row_names_the_mode_used_and_limits_need_cuda():
    """A config with memory_saving='auto' is counted in the mode it starts in (fake
    and CPU tensors never run out of memory) and the row says so; a fixed mode is used
    as given. --memory-limit-gb is a CUDA option: one clear error elsewhere."""
    auto = gm.measure(TINY_DIDA, 'fake', memory_saving='auto', size=SIZE, batch=1)
    fixed = gm.measure(TINY_DIDA, 'fake', memory_saving='per_domain', size=SIZE,
                       batch=1)
    assert (auto['memory_saving'], auto['memory_saving_used']) == ('auto', 'none')
    assert fixed['memory_saving_used'] == 'per_domain'
    assert auto['peak_bytes'] > fixed['peak_bytes']  # 'none' holds both domains
    assert 'memory_saving_used' not in gm.measure(TINY, 'fake', size=SIZE, batch=1)
    with pytest.raises(ValueError, match='--memory-limit-gb needs --device cuda'):
        gm.measure(TINY_DIDA, 'fake', memory_saving='auto', size=SIZE, batch=1,
                   memory_limit_gb=24)

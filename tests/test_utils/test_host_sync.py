"""Host synchronisations: the counter finds them, the UDA training steps make none,
and the sync-free replacements compute what they replace."""
import pytest
import torch
from mmseg.models.losses import accuracy as mmseg_accuracy

from mmseg_dida.models.losses.accuracy import seg_accuracy
from mmseg_dida.models.utils.feature_distance import masked_feat_dist
from mmseg_dida.models.utils.mixing import get_class_masks
from tests.helpers.host_sync import HostSyncCounter
from tests.helpers.uda import build_dacs, make_batch, optim_wrapper, tiny_hrda


def test_counter_separates_device_reads_from_host_values():
    x = torch.randn(4, 5)
    g = torch.Generator().manual_seed(0)
    with HostSyncCounter() as c:
        y = x.exp().sum()
        y.item()                                  # a device value: read
        x[x > 0]                                  # boolean mask: shape
        torch.unique(x.round())                   # shape
        (x * 2).tolist()                          # copy to the host
        torch.rand((), generator=g).item()        # CPU generator: host
        (torch.rand(3, generator=g) * 2).tolist()  # computed from host values: host
        torch.tensor([1.5]).item()                # made from a Python number: host
        x.sum(dim=0)                              # no read
        host = torch.rand(3, generator=g)
        host.to('cpu')                            # a blocking upload from the host
        host.to('cpu', non_blocking=True)         # not blocking
        host.to(torch.float64)                    # a cast: no upload
        torch.tensor([1.0, 2.0], device='cpu')    # Python data to a device
        x.new_tensor([3.0])                       # likewise
        x.new_full((), 3.0)                       # a fill on the device: fine
    kinds = [(kind, op) for kind, op, _ in c.syncs]
    assert kinds == [('read', '_local_scalar_dense'), ('shape', 'index'),
                     ('shape', '_unique2'), ('read', 'tolist'), ('upload', 'to'),
                     ('upload', 'tensor'), ('upload', 'new_tensor')]
    assert len(c.host_reads) == 3
    assert all('test_host_sync.py' not in s for _, _, s in c.syncs)  # not project code
    # the wrapped methods and factories are restored on exit
    assert torch.Tensor.tolist.__name__ == 'tolist' and torch.Tensor.to.__name__ == 'to'
    assert torch.tensor.__name__ == 'tensor'


STEPS = {
    'daformer_fd': dict(imnet_feature_dist_lambda=0.005,
                        imnet_feature_dist_classes=[1, 2]),
    'daformer_dida': dict(plugins=[dict(type='DiDA')]),
    'mic_hrda_dida': dict(segmentor=tiny_hrda(), plugins=[dict(type='MIC'),
                                                          dict(type='DiDA')]),
}


@pytest.mark.parametrize('name', list(STEPS))
def test_uda_training_step_never_waits_for_the_device(name):
    model = build_dacs(**STEPS[name])
    ow = optim_wrapper(model)
    model.train_step(make_batch(seed=0), ow)  # the first step builds lazy state
    batch = make_batch(seed=1)
    c = HostSyncCounter()
    c.mark_host(batch)  # the loader's batch: its upload must not block
    with c:
        log = model.train_step(batch, ow)
    assert c.syncs == []
    # the step drew its augmentation parameters (host values) and logged tensors
    assert c.host_reads
    assert all(isinstance(v, torch.Tensor) for k, v in log.items() if 'loss' in k)


def test_seg_accuracy_equals_mmseg_accuracy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 8, 9, generator=g)
    labels = torch.randint(0, 5, (3, 8, 9), generator=g)
    labels[0, :3] = 255
    ours = seg_accuracy(logits, labels, ignore_index=255)
    theirs = mmseg_accuracy(logits, labels, ignore_index=255)
    assert ours.shape == theirs.shape == (1,)
    assert torch.allclose(ours, theirs, rtol=1e-6)
    all_ignored = torch.full((3, 8, 9), 255)
    assert seg_accuracy(logits, all_ignored).item() == pytest.approx(100.0)  # eps/eps
    with pytest.raises(ValueError, match='do not match'):
        seg_accuracy(logits, labels[:, :4])


def test_masked_feat_dist_with_a_tensor_denominator_equals_a_number():
    g = torch.Generator().manual_seed(0)
    f, r = torch.randn(2, 4, 3, 5, generator=g), torch.randn(2, 4, 3, 5, generator=g)
    mask = torch.rand(2, 3, 5, generator=g) > 0.5
    dist = torch.norm(f - r, dim=1)
    expected = dist[mask].sum() / 7.0
    assert torch.allclose(masked_feat_dist(f, r, mask, 7.0), expected)
    assert torch.allclose(masked_feat_dist(f, r, mask, torch.tensor(7.0)), expected)
    assert torch.allclose(masked_feat_dist(f, r, mask), dist[mask].mean())
    empty = torch.zeros_like(mask)
    f.requires_grad_(True)
    out = masked_feat_dist(f, r, empty, torch.tensor(0.0))
    assert out.item() == 0.0 and out.requires_grad


def test_class_masks_pick_a_uniform_half_of_the_present_classes():
    # 5 classes present in the batch (image 0 has all of them, image 1 only 2 and 4):
    # every draw picks exactly ceil(5 / 2) = 3 of them, each with probability 3/5
    lbl = torch.tensor([[[0, 1, 2, 3, 7]], [[2, 2, 7, 7, 2]]])  # (2, 1, 5)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(8)
    draws = 3000
    for _ in range(draws):
        m = get_class_masks(lbl[:, None], generator=g)[:, 0, 0].bool()  # (2, 5)
        picked0 = lbl[0, 0][m[0]]
        assert picked0.numel() == 3
        counts[picked0] += 1
        # image 1 takes the same decision for class 2 / 7 wherever it occurs
        assert m[1][lbl[1, 0] == 2].unique().numel() == 1
    freq = counts[[0, 1, 2, 3, 7]] / draws
    assert torch.allclose(freq, torch.full((5,), 0.6), atol=0.04)
    assert counts[[4, 5, 6]].sum() == 0


def test_dacs_iteration_follows_a_loaded_state():
    model = build_dacs()
    assert model.iteration == 0
    state = model.state_dict()
    state['local_iter'] = torch.tensor(5)
    model.load_state_dict(state)
    assert model.iteration == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason='counts CUDA syncs')
@pytest.mark.parametrize('name', ['daformer_dida', 'mic_hrda_dida'])
def test_cuda_step_makes_no_sync_that_torch_reports(name):
    """On a GPU (gpu_check's tests part runs ``-k cuda``): torch's own synchronisation
    debug mode agrees with the CPU counter that the step never waits."""
    from tests.helpers.host_sync import count_cuda_syncs
    model = build_dacs(**STEPS[name]).cuda()
    ow = optim_wrapper(model)
    model.train_step(make_batch(seed=0), ow)
    batch = make_batch(seed=1)
    count, messages, _ = count_cuda_syncs(model.train_step, batch, ow)
    assert count == 0, messages

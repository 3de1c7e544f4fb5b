"""DeferredRuntimeInfoHook: the message hub receives what mmengine's RuntimeInfoHook
gives it, read from the device once per logging interval instead of once per value
per step; checkpoints hold the same histories."""
import numpy as np
import pytest
import torch
from mmengine.hooks import RuntimeInfoHook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from mmseg_dida.engine.hooks import DeferredRuntimeInfoHook
from tests.helpers.host_sync import HostSyncCounter

KEYS = ('loss', 'positives', 'acc', 'fixed')


class Numbers(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return dict(x=torch.tensor([float(i) - 3.0, 0.5 * i]))


class Toy(BaseModel):
    """A step whose log holds a float loss, an int64 count, a (1,)-shaped accuracy
    (as mmseg's) and a Python number."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.3, -0.2]))

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def train_step(self, data, optim_wrapper):
        x = data['x']
        y = x * self.w
        loss = (y ** 2).mean()
        optim_wrapper.update_params(loss)
        return dict(loss=loss.detach(), positives=(y > 0).sum(),
                    acc=(y.detach() > 0).float().mean().reshape(1) * 100, fixed=0.25)


def _train(tmp_path, name, hook_type, max_iters=7, counter=None):
    runner = Runner(
        model=Toy(), work_dir=str(tmp_path / name), experiment_name=f'{name}_{id(tmp_path)}',
        train_dataloader=dict(dataset=Numbers(), batch_size=2, num_workers=0,
                              sampler=dict(type='InfiniteSampler', shuffle=False),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(runtime_info=dict(type=hook_type),
                           logger=dict(type='LoggerHook', interval=3),
                           checkpoint=dict(type='CheckpointHook', interval=4,
                                           by_epoch=False)),
        log_level='WARNING', default_scope='mmengine')
    if counter is None:
        runner.train()
    else:
        with counter:
            runner.train()
    return runner


def _histories(hub_state_or_hub):
    scalars = (hub_state_or_hub.log_scalars if hasattr(hub_state_or_hub, 'log_scalars')
               else hub_state_or_hub['log_scalars'])
    return {k: (np.asarray(v._log_history).tolist(), np.asarray(v._count_history).tolist())
            for k, v in scalars.items()
            if k.split('/', 1)[-1] in KEYS}


def test_deferred_hook_gives_the_message_hub_and_checkpoints_the_same_values(tmp_path):
    plain = _train(tmp_path, 'plain', RuntimeInfoHook)
    deferred = _train(tmp_path, 'deferred', DeferredRuntimeInfoHook)
    expected = _histories(plain.message_hub)
    assert set(expected) == {f'train/{k}' for k in KEYS}
    assert all(len(v[0]) == 7 for v in expected.values())
    got = _histories(deferred.message_hub)
    assert got == expected
    # the int count stays an int, the Python number unchanged
    assert all(float(v).is_integer() for v in got['train/positives'][0])
    assert got['train/fixed'][0] == [0.25] * 7
    # iteration 4's checkpoint (between two logging iterations) holds the first four
    for name in ('plain', 'deferred'):
        ckpt = torch.load(tmp_path / name / 'iter_4.pth', weights_only=False)
        hist = _histories(ckpt['message_hub'])
        assert {k: (v[0], v[1]) for k, v in hist.items()} == {
            k: (v[0][:4], v[1][:4]) for k, v in expected.items()}


def test_deferred_hook_reads_the_device_once_per_logging_interval(tmp_path):
    plain_counter, deferred_counter = HostSyncCounter(), HostSyncCounter()
    _train(tmp_path, 'plain', RuntimeInfoHook, counter=plain_counter)
    _train(tmp_path, 'deferred', DeferredRuntimeInfoHook, counter=deferred_counter)

    def reads(counter, where):
        return sum(where in site for _, _, site in counter.syncs)

    # mmengine's hook: one read per tensor value per step (3 tensors x 7 steps)
    assert reads(plain_counter, 'mmengine/logging/message_hub.py') == 21
    assert reads(deferred_counter, 'mmengine/logging/message_hub.py') == 0
    # deferred: iterations 3 and 6 (logger), 4 (checkpoint), 7 (last)
    assert reads(deferred_counter, 'runtime_info_hook.py') == 4


def test_deferred_hook_reads_when_too_many_steps_wait(tmp_path):
    counter = HostSyncCounter()
    runner = Runner(
        model=Toy(), work_dir=str(tmp_path / 'cap'), experiment_name=f'cap_{id(tmp_path)}',
        train_dataloader=dict(dataset=Numbers(), batch_size=2, num_workers=0,
                              sampler=dict(type='InfiniteSampler', shuffle=False),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=5),
        default_hooks=dict(runtime_info=dict(type=DeferredRuntimeInfoHook, max_pending=2),
                           logger=dict(type='LoggerHook', interval=100), checkpoint=None),
        log_level='WARNING', default_scope='mmengine')
    with counter:
        runner.train()
    # after steps 2 and 4 (two waiting) and 5 (the last)
    assert sum('runtime_info_hook.py' in s for _, _, s in counter.syncs) == 3
    assert len(runner.message_hub.get_scalar('train/loss')._log_history) == 5


@pytest.mark.parametrize('bad', [0, -1, 1.5])
def test_deferred_hook_rejects_bad_max_pending(bad):
    with pytest.raises(ValueError, match='max_pending'):
        DeferredRuntimeInfoHook(max_pending=bad)

"""fp16-style mixed precision (mmengine's ``AmpOptimWrapper`` with a dynamic loss
scaler) on a CPU, for tests of the loss-scaled step: the project itself refuses
``AmpOptimWrapper`` without CUDA (mmseg_dida/engine/mixed_precision.py); a test builds
it as on CUDA, in bfloat16, with torch's CPU GradScaler."""
import torch


def cpu_loss_scaled_wrapper(optimizer, monkeypatch, init_scale: float = 2.0 ** 16):
    """mmengine's AmpOptimWrapper around ``optimizer`` with bfloat16 autocast on the
    CPU and a dynamic CPU loss scaler starting at ``init_scale``."""
    from mmengine.optim.optimizer import amp_optimizer_wrapper as amp_mod
    monkeypatch.setattr(amp_mod, 'is_cuda_available', lambda: True)
    wrapper = amp_mod.AmpOptimWrapper(optimizer=optimizer, dtype='bfloat16')
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=init_scale)
    return wrapper

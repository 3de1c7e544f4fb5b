"""Runner checkpoints written completely or not at all.

mmengine writes a checkpoint in place: a killed process leaves a truncated file that
the next ``--resume`` or test reads. :func:`atomic_runner_checkpoints` makes its
``save_checkpoint`` write local files through
:func:`mmseg_dida.utils.atomic_files.atomic_torch_save` (temporary file in the same
folder, fsync, rename). Remote backends (``backend_args``, ``s3://``...) are left to
mmengine. :func:`mmseg_dida.compat.apply` switches it on when ``mmseg_dida`` is
imported, with the other patches of the libraries underneath.
"""
from ...utils.atomic_files import atomic_torch_save

__all__ = ['atomic_runner_checkpoints']

_PATCH_MARKER = '__mmseg_dida_patched__'


def atomic_runner_checkpoints() -> None:
    """Make mmengine's ``save_checkpoint`` write local files atomically."""
    import mmengine.runner as runner_pkg
    import mmengine.runner.checkpoint as ckpt_mod
    import mmengine.runner.runner as runner_mod
    original = ckpt_mod.save_checkpoint
    if getattr(original, _PATCH_MARKER, False):
        return

    def save_checkpoint(checkpoint, filename, file_client_args=None,
                        backend_args=None):
        if file_client_args is None and backend_args is None and \
                '://' not in str(filename):
            atomic_torch_save(checkpoint, str(filename))
            return
        original(checkpoint, filename, file_client_args=file_client_args,
                 backend_args=backend_args)

    save_checkpoint.__doc__ = original.__doc__
    setattr(save_checkpoint, _PATCH_MARKER, True)
    for module in (ckpt_mod, runner_mod, runner_pkg):
        module.save_checkpoint = save_checkpoint

"""Deployment and the checkpoint layouts it defines, in one package below the models'
users: :mod:`.core` makes the plain mmseg segmentor and config a training run stands
for (the deploy contract); :mod:`.state_mapping` maps a checkpoint's tensors between
the training and the deployed layouts; :mod:`.model_loading` loads any of them into a
model, strictly. It imports only ``mmseg_dida.utils`` (atomic files)."""
from .core import (
                   SEGMENTOR_ATTR,
                   deploy_config,
                   deploy_segmentor,
                   deployed_key_map,
                   deployed_name,
                   drop_training_only_hooks,
                   is_training_only_hook,
                   is_wrapper,
                   replace_wrappers,
                   save_deployable,
                   training_segmentor,
                   wrapper_classes,
)

__all__ = ['SEGMENTOR_ATTR', 'is_wrapper', 'training_segmentor', 'replace_wrappers',
           'deploy_segmentor', 'deployed_key_map', 'wrapper_classes', 'deployed_name',
           'deploy_config', 'drop_training_only_hooks', 'is_training_only_hook',
           'save_deployable']

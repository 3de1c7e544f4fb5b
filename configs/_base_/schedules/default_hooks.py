# The hooks every training run gets (mmseg keeps default_hooks with the schedules;
# each schedule file inherits these and sets its checkpoint interval). Test runs and
# deployed configs drop the hooks whose class is training-only
# (mmseg_dida.deploy.drop_training_only_hooks).
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # complete or absent, found again by --resume (mmseg_dida/engine/resume)
    checkpoint=dict(type='ResumableCheckpointHook', by_epoch=False, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # a picture of a validation image's prediction every 50 validation batches
    # (work_dir/<timestamp>/vis_data/vis_image and TensorBoard)
    visualization=dict(type='SegVisualizationHook', draw=True, interval=50),
    # the run's lifecycle: a stop on SIGTERM/SIGINT/SIGUSR1 after the current
    # iteration, with a checkpoint (mmseg_dida/engine/resume); a stop after 10
    # non-finite losses in a row; the log read from the device once per interval;
    # the config key `speed` applied to the model (mmseg_dida/engine/speed_options.py)
    graceful_stop=dict(type='GracefulStopHook'),
    nonfinite_loss=dict(type='NonFiniteLossHook'),
    runtime_info=dict(type='DeferredRuntimeInfoHook'),
    speed_options=dict(type='SpeedOptionsHook'))

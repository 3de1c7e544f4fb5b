# DiDA (NeurIPS 2025, arXiv 2412.10339) on top of a self-training UDA config (DACS:
# DAFormer / HRDA / MIC): degraded images x_t = sqrt(abar_t) x_0 + sqrt(1-abar_t) eps
# (eps per pixel, sigmoid schedule, T = 100), the diffusion encoder g' with time FiLM
# fused into the backbone, the DIC loss L_D (lambda_D 0.5) and the reconstruction loss
# L_R of h'. lambda_R: 5 for MiT (DAFormer, this default), 1 for DeepLabV2 (set in
# those configs). The degraded passes use batch statistics but never change the
# student's running statistics (update_norm_stats=False).
# Use (a UDA config's model and custom_hooks come from its other base):
#   _base_ = ['../daformer/<baseline>.py', '../_base_/uda/dida.py']
#   model = dict(plugins=[_base_.dida])
#   custom_hooks = [*_base_.uda_hooks, _base_.dida_hook]
dida = dict(
    type='DiDA',
    degradation=dict(
        type='Degradation',
        kind='noise',
        schedule='sigmoid',
        num_timesteps=100,
        noise_downsample=1,  # the paper's eps ~ N(0, I) per pixel; 4: earlier code
        share_t=True,
        share_noise=True),
    mode='full',  # g + FiLM_t(g'); ablations: 'g_time', 'none'
    recon='full',  # h'; ablations: 'linear', None
    lambda_d=0.5,
    lambda_r=5.0,
    update_norm_stats=False,
    # BatchNorm of a degraded pass over both domains: 'joint' (one batch) or
    # 'per_domain' (each domain's own statistics; needed by the modes below that
    # split the domains into two passes when the student has BatchNorm)
    degraded_norm='joint',
    # 'per_domain' / 'g_prime' / 'encoders': less memory, more time; 'auto': the
    # fastest of them that fits the card (see DiDA); with degraded_norm='per_domain'
    # (or no BatchNorm) every mode gives the same losses and gradients
    memory_saving='none')
# The paper's MiT-B5 configs (512 crops; HRDA/MIC: 1024 with 512 detail crops) start
# with the fastest mode and step down to 'per_domain', 'g_prime', 'encoders' when a
# step runs out of GPU memory (memory_saving='auto': the step is replayed exactly).
# DAFormer's head has BatchNorm, and the modes that run the domains as separate passes
# can only normalise each domain with its own batch statistics, so these configs use
# per-domain statistics in every mode (degraded_norm='per_domain', the authors'
# earlier code, which ran the domains separately): then every mode computes the same
# losses and gradients, and a switch in the middle of a run changes only its memory.
# From the estimates (docs/gpu_memory_table.md) HRDA / MIC(HRDA) + DiDA with AMP settle
# at 'per_domain' (1.7x) on a 24 GB card and stay at 'none' on 48 GB and larger.
# DeepLabV2 configs keep 'none' with the joint statistics of one degraded batch.
dida_mitb5 = dict(dida, memory_saving='auto', degraded_norm='per_domain')
dida_hook = dict(type='DiDAHook', vis_interval=4000, diag_interval=1000,
                 save_deploy=True)

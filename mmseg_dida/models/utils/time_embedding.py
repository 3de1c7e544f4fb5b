"""Time conditioning shared by DiDA's modules: the sinusoidal embedding of integer
timesteps, the time MLP Embed(t) and the FiLM of Eq. 4 (DiDA, NeurIPS 2025, arXiv
2412.10339, Sec. 3.2), used by the diffusion encoder's feature compensation, the
reconstruction head h' and the time-conditioned segmentation path."""
import math

import torch
from torch import Tensor, nn

__all__ = ['sinusoidal_embedding', 'TimeEmbedding', 'TimeFiLM', 'COMPENSATION_INITS',
           'FILM_INITS']

#: the starts of the diffusion encoder's compensation FiLMs (``compensation_init``)
COMPENSATION_INITS = ('default', 'zero')
#: every start of a TimeFiLM: also 'identity' (g's block FiLMs of ``block_time``)
FILM_INITS = COMPENSATION_INITS + ('identity', )


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer/DDPM sinusoidal embedding of integer timesteps, (N,) -> (N, dim):
    [cos(t w_k), sin(t w_k)], w_k = max_period^(-k / (dim / 2)), k < dim / 2."""
    if dim % 2:
        raise ValueError(f'sinusoidal_embedding: dim must be even, got {dim}')
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) *
                      torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float().view(-1, 1) * freqs.view(1, -1)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class TimeEmbedding(nn.Module):
    """Embed(t): sinusoidal(``embed_dim``) -> Linear -> GELU -> Linear(``time_dim``)."""

    def __init__(self, embed_dim: int = 16, time_dim: int = 256):
        super().__init__()
        self.embed_dim = embed_dim
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(t, self.embed_dim))


class TimeFiLM(nn.Module):
    """Eq. 4 at one level: z * (MLP_s(e) + 1) + MLP_b(e), with
    (MLP_s, MLP_b) = split(Linear(SiLU(e), 2 C)).

    ``init='zero'`` starts the modulation at z * 0 + 0 = 0 for every t (weights 0,
    MLP_s bias -1, MLP_b bias 0); ``'identity'`` at z * 1 + 0 = z (weights and
    biases 0); ``'default'`` keeps torch's Linear initialisation (scale and shift
    near 0, i.e. z * ~1 + ~0)."""

    def __init__(self, time_dim: int, channels: int, init: str = 'default'):
        super().__init__()
        if init not in FILM_INITS:
            raise ValueError(f'TimeFiLM: init must be one of {FILM_INITS}, '
                             f'got {init!r}')
        self.channels = channels
        self.init = init
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * channels))
        self.reset_modulation()

    @torch.no_grad()
    def reset_modulation(self) -> None:
        """Apply ``init`` to the output layer (nothing for 'default')."""
        if self.init in ('zero', 'identity'):
            linear = self.mlp[-1]
            linear.weight.zero_()
            linear.bias.zero_()
            if self.init == 'zero':
                linear.bias[:self.channels] = -1.0

    def forward(self, z: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.mlp(emb).chunk(2, dim=1)
        shape = (z.shape[0], self.channels) + (1, ) * (z.dim() - 2)
        return z * (scale.view(shape) + 1) + shift.view(shape)

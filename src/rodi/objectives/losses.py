"""The objective's terms as functions of tensors: negatives for the critics, the KL to the prior,
the critics' logistic loss, the augmented Lagrangian of the MI constraint and the updates of lambda
and gamma (ICCV 2019, Esser et al., sections 3-4; docs/method.md sections 3 and 9).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rodi.config import ObjectiveConfig


def derangement(n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """A random permutation of ``range(n)`` without fixed points (one random n-cycle).

    Returns (n,) long with ``s[i] != i`` for every i.

    Raises:
        ValueError: for n < 2, where no derangement exists (a batch of one has no negatives).
    """
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {n}: the critics pair each "
                         "pose code with another example's appearance code, so batches need B >= 2")
    order = torch.randperm(n, generator=generator)
    s = torch.empty(n, dtype=torch.long)
    s[order] = order.roll(-1)
    return s.to(device) if device is not None else s


def colour_jitter(x: torch.Tensor, strength: float, draw=None) -> torch.Tensor:
    """Random colour changes of (B, 3, H, W) pixels in [-1, 1], one per image: the channels in a
    random order, each with a random gain in [1 - s/2, 1 + s/2] and offset in [-0.4 s, 0.4 s], then
    clamped to [-1, 1]. Edges and shading stay where they are, so the pose survives and the colours
    do not (docs/method.md section 9).

    Args:
        strength: s in [0, 1]; 0 returns ``x`` unchanged.
        draw: ``draw(shape) -> uniform [0, 1) tensor`` of that shape on ``x``'s device (to shard a
            global batch's draws over processes); default ``torch.rand``.
    """
    if strength <= 0:
        return x
    b = x.shape[0]
    draw = draw or (lambda shape: torch.rand(shape, device=x.device))
    u = draw((b, 9)).to(x.dtype)
    order = u[:, :3].argsort(dim=1)  # a uniformly random permutation of the channels per image
    gain = 1 + strength * (u[:, 3:6] - 0.5)
    offset = 0.8 * strength * (u[:, 6:9] - 0.5)
    permuted = x.gather(1, order[:, :, None, None].expand_as(x))
    return (permuted * gain[:, :, None, None] + offset[:, :, None, None]).clamp(-1, 1)


def colour_map(x: torch.Tensor, strength: float, draw=None, features: int = 8) -> torch.Tensor:
    """A random smooth map of the colour cube, one per image, applied to every pixel of (B, 3, H,
    W) pixels in [-1, 1]: ``y = tanh(A sin(W x + phi))`` with ``features`` random Fourier features
    of the pixel's colour x (frequencies W uniform in [-3 s, 3 s] per channel, phases uniform, A
    uniform in [-1.5, 1.5] / sqrt(features)). Pixels of one colour keep one colour, so regions and
    their edges stay where they are; unlike a per-channel gain and offset (:func:`colour_jitter`),
    the map has too many degrees of freedom to be undone from a few colours known from elsewhere
    (the background, skin), so the colours themselves are lost (docs/method.md section 9).

    Args:
        strength: s in [0, 1]; 0 returns ``x`` unchanged.
        draw: ``draw(shape) -> uniform [0, 1) tensor`` as in :func:`colour_jitter`.
    """
    if strength <= 0:
        return x
    b = x.shape[0]
    draw = draw or (lambda shape: torch.rand(shape, device=x.device))
    k = features
    u = draw((b, k * 7)).to(x.dtype)
    frequencies = (6 * strength * (u[:, :3 * k] - 0.5)).view(b, k, 3)
    phases = (2 * math.pi * u[:, 3 * k:4 * k]).view(b, k, 1, 1)
    amplitudes = (3 * (u[:, 4 * k:] - 0.5) / math.sqrt(k)).view(b, 3, k)
    waves = torch.sin(torch.einsum("bkc,bchw->bkhw", frequencies, x) + phases)
    return torch.tanh(torch.einsum("bck,bkhw->bchw", amplitudes, waves))


def zoom(x: torch.Tensor, strength: float, draw=None) -> torch.Tensor:
    """A random zoom about the image centre, one per image, of (B, C, H, W) pixels in [-1, 1]:
    the factor is ``(1 + s) ** u`` with u uniform in [-1, 1], so it lies in [1 / (1 + s), 1 + s]
    and is as often a zoom in as out. Bilinear resampling; pixels from outside the frame repeat
    its border. Given to the pose encoder only, while the decoder must still render the image at
    its own size, it makes the apparent size of the body a poor cue for the size to render, which
    the appearance image of the same identity gives (docs/method.md section 9).

    Args:
        strength: s >= 0; 0 returns ``x`` unchanged.
        draw: ``draw(shape) -> uniform [0, 1) tensor`` as in :func:`colour_jitter`.

    Returns:
        (B, C, H, W) in the range of ``x``.
    """
    if strength <= 0:
        return x
    b = x.shape[0]
    draw = draw or (lambda shape: torch.rand(shape, device=x.device))
    factor = (1.0 + strength) ** (2.0 * draw((b,)).to(x.dtype) - 1.0)
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / factor  # output pixel p reads input pixel p / factor
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) in nats, summed over all but the batch dimension:
    (B,)."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def critic_loss(joint: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
    """Logistic loss of a joint-vs-marginal classifier:
    0.5 * [softplus(-l_joint) + softplus(l_marginal)], averaged over the batch."""
    return 0.5 * (F.softplus(-joint) + F.softplus(marginal)).mean()


def augmented_lagrangian(c: torch.Tensor, multiplier: torch.Tensor, mu: float) -> torch.Tensor:
    """Penalty of the constraint c <= 0: [mu * c + lambda >= 0] * (lambda * c + 0.5 * mu * c^2)."""
    return (mu * c + multiplier >= 0).to(c.dtype) * (multiplier * c + 0.5 * mu * c.square())


def update_multiplier(multiplier: float, c: float, mu: float) -> float:
    """lambda <- max(0, lambda + mu * c)."""
    return max(0.0, multiplier + mu * c)


def update_gamma(gamma: float, ema_attacked: float, ema_independent: float,
                 cfg: ObjectiveConfig) -> float:
    """gamma <- clip(gamma + l_gamma * (clip(EMA(I_T') - EMA(I_T), 0, 10) - b_gamma), 0,
    gamma_max)."""
    gap = min(max(ema_independent - ema_attacked, 0.0), 10.0)
    return min(max(gamma + cfg.gamma_lr * (gap - cfg.gamma_bias), 0.0), cfg.gamma_max)

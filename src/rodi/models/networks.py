"""Encoders and decoder of the appearance/pose model (ICCV 2019, Esser et al., section 3 and
supplement; docs/method.md section 2).

Codes are spatial maps (C, h, w); the 64x64 setup uses C = 16 at 4x4. Residual blocks are
``x + conv(act(x))`` (the official code forgot the activation, which made its networks linear).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rodi.config import Config, ModelConfig
from rodi.variants import variant

LOGVAR_RANGE = (-30.0, 10.0)


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


class ResBlock(nn.Module):
    """``x + conv(act(x))`` with a ``kernel`` x ``kernel`` convolution; shape preserving."""

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        self.act = _act()
        self.conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.act(x))


def _upsample(w_in: int, w_out: int, mode: str) -> nn.Module:
    """x2 up-sampling from ``w_in`` to ``w_out`` channels: a 4x4 stride-2 transposed convolution
    (``transpose``, the authors') or nearest-neighbour resizing then a 3x3 convolution (``resize``,
    which cannot make the checkerboard texture of uneven kernel overlap; Odena et al., Distill
    2016)."""
    if mode == "transpose":
        return nn.ConvTranspose2d(w_in, w_out, 4, stride=2, padding=1)
    if mode == "resize":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                             nn.Conv2d(w_in, w_out, 3, padding=1))
    raise ValueError(f"unknown up-sampling {mode!r}; use 'transpose' or 'resize'")


def _widths(image_size: int, code_size: int, channels: int, max_channels: int) -> list[int]:
    levels = int(math.log2(image_size // code_size)) if image_size >= 2 * code_size else 0
    if levels < 1 or code_size * 2**levels != image_size:
        raise ValueError(
            f"image size {image_size} must be the code size {code_size} times a power of two"
            " (at least 2)"
        )
    return [min(channels * 2**i, max_channels) for i in range(levels + 1)]


class Encoder(nn.Module):
    """Convolutional encoder (B, 3, H, W) -> (B, out_channels, code_size, code_size).

    A stride-2 stem, then per resolution ``blocks`` residual blocks and a stride-2 convolution,
    finishing with residual blocks and a 1x1 head at the code resolution.
    """

    def __init__(self, out_channels: int, *, image_size: int, code_size: int, channels: int,
                 max_channels: int, blocks: int):
        super().__init__()
        widths = _widths(image_size, code_size, channels, max_channels)
        layers: list[nn.Module] = [nn.Conv2d(3, widths[1], 4, stride=2, padding=1)]
        for w_in, w_out in zip(widths[1:-1], widths[2:]):
            layers += [ResBlock(w_in) for _ in range(blocks)]
            layers += [_act(), nn.Conv2d(w_in, w_out, 4, stride=2, padding=1)]
        layers += [ResBlock(widths[-1]) for _ in range(blocks)]
        layers += [_act(), nn.Conv2d(widths[-1], out_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FiLM(nn.Module):
    """Feature-wise scale and shift of (B, W, h, w) features by a (B, C) appearance vector:
    ``h * (1 + s) + b`` with (s, b) a linear function of the vector (Perez et al., AAAI 2018). It
    starts as the identity (zero weights), so a fresh decoder renders as without it."""

    def __init__(self, code_channels: int, width: int):
        super().__init__()
        self.linear = nn.Linear(code_channels, 2 * width)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, h: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(appearance)[:, :, None, None].chunk(2, dim=1)
        return h * (1 + scale) + shift


class CrossAttention(nn.Module):
    """Reads the appearance map where the pose features ask for it: each position of (B, W, h, w)
    decoder features queries the (B, C, h', w') appearance map's positions, and the softmax-weighted
    values are added back, ``h + out(softmax(q k^T / sqrt(d)) v)`` (Vaswani et al., NeurIPS 2017;
    docs/method.md section 9). A pose-aligned part of the body (an arm, the torso) can so fetch the
    colours of the same part wherever the appearance image has it. The output projection starts at
    zero, so a fresh decoder renders as without it.
    """

    def __init__(self, code_channels: int, width: int, dim: int = 32):
        super().__init__()
        self.query = nn.Conv2d(width, dim, 1)
        self.key = nn.Conv2d(code_channels, dim, 1)
        self.value = nn.Conv2d(code_channels, dim, 1)
        self.out = nn.Conv2d(dim, width, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        b, _, y, x = h.shape
        q = self.query(h).flatten(2).transpose(1, 2)  # (B, h w, d)
        k = self.key(appearance).flatten(2).transpose(1, 2)  # (B, h' w', d)
        v = self.value(appearance).flatten(2).transpose(1, 2)
        read = nn.functional.scaled_dot_product_attention(q, k, v)  # (B, h w, d)
        return h + self.out(read.transpose(1, 2).reshape(b, -1, y, x))


class Decoder(nn.Module):
    """D(pi, alpha): each code gets its own small stack, the two are concatenated and upsampled to
    (B, 3, H, W) pixels (unbounded; clamp to [-1, 1] for display). No skips from the pose image.

    With ``appearance="global"`` the appearance code's mean over positions (a (B, C) vector;
    with ``"vector"`` the whole code flattened, (B, C * h * w)) also scales and shifts the
    features after the residual blocks of every resolution (:class:`FiLM`), so the decoder can
    paint the appearance wherever the pose puts the body (docs/method.md section 9). With
    ``"cross"`` the code is the appearance map itself: its mean drives the FiLM layers and is what
    the decoder's first stack sees, as for ``global``, and after each FiLM layer the features also
    read the map through :class:`CrossAttention`.

    ``output_blocks`` > 0 adds a stage at the image's own resolution: the last up-sampling writes
    ``channels`` features instead of the pixels, then that many residual blocks and a 3x3
    convolution to RGB (docs/method.md section 9). Without it the finest features the decoder
    computes are at half the image's resolution, so details a few pixels wide (a hand, a shoe) come
    from a single convolution of a nearest-neighbour enlargement.
    """

    def __init__(self, code_channels: int, *, image_size: int, code_size: int, channels: int,
                 max_channels: int, blocks: int, upsample: str, appearance: str = "spatial",
                 output_blocks: int = 0):
        super().__init__()
        widths = _widths(image_size, code_size, channels, max_channels)[::-1]
        half = widths[0] // 2
        self.pose_stack = nn.Sequential(nn.Conv2d(code_channels, half, 1), ResBlock(half, 1))
        self.appearance_stack = nn.Sequential(nn.Conv2d(code_channels, half, 1), ResBlock(half, 1))
        layers: list[nn.Module] = [nn.Conv2d(2 * half, widths[0], 3, padding=1)]
        modulated: list[tuple[int, int]] = []  # (index in net after which to modulate, width)
        for w_in, w_out in zip(widths[:-2], widths[1:-1]):
            layers += [ResBlock(w_in) for _ in range(blocks)]
            modulated.append((len(layers) - 1, w_in))
            layers += [_act(), _upsample(w_in, w_out, upsample)]
        layers += [ResBlock(widths[-2]) for _ in range(blocks)]
        modulated.append((len(layers) - 1, widths[-2]))
        if output_blocks:  # a stage at the image's own resolution, then a 3x3 RGB head
            layers += [_act(), _upsample(widths[-2], widths[-1], upsample)]
            layers += [ResBlock(widths[-1]) for _ in range(output_blocks)]
            layers += [_act(), nn.Conv2d(widths[-1], 3, 3, padding=1)]
        else:  # the authors': the last up-sampling writes the pixels
            layers += [_act(), _upsample(widths[-2], 3, upsample)]
        self.net = nn.Sequential(*layers)
        # the appearance vector: the code's mean over positions (global), or the whole code
        # (vector: C * h * w numbers whose layout means nothing spatial); no parameters for
        # spatial codes, so their checkpoints keep the keys they always had
        self.flat_appearance = appearance == "vector"
        self.cross = appearance == "cross"
        vector = code_channels * code_size**2 if self.flat_appearance else code_channels
        self.film = nn.ModuleList([FiLM(vector, w) for _, w in modulated]
                                  if appearance in ("global", "vector", "cross") else [])
        self.attention = nn.ModuleList([CrossAttention(code_channels, w) for _, w in modulated]
                                       if self.cross else [])
        self._film_at = {i: k for k, (i, _) in enumerate(modulated)} if self.film else {}

    def forward(self, pose: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        vector = appearance.flatten(1) if self.flat_appearance else appearance.mean((2, 3))
        # a cross code's first stack sees its mean, as a global code's does: the map itself is
        # laid out in the appearance image's pose, and reaches the decoder through attention only
        joined = vector[:, :, None, None].expand_as(appearance) if self.cross else appearance
        h = torch.cat([self.pose_stack(pose), self.appearance_stack(joined)], dim=1)
        if not self.film:
            return self.net(h)
        for i, layer in enumerate(self.net):
            h = layer(h)
            if i in self._film_at:
                k = self._film_at[i]
                h = self.film[k](h, vector)
                if self.cross:
                    h = self.attention[k](h, appearance)
        return h


class AppearancePoseModel(nn.Module):
    """Pose encoder q(pi | x) (diagonal Gaussian), deterministic appearance encoder and decoder,
    built from the ``model`` section of a config (docs/method.md section 5).

    Args:
        cfg: ``image_size`` (side of the square input images in pixels), ``code_channels`` and
            ``code_size`` (each code is (code_channels, code_size, code_size)), ``channels``,
            ``max_channels`` and ``blocks`` (width at the first level, width cap, residual blocks
            per resolution) and ``upsample`` (the decoder's x2 up-sampling, ``transpose`` or
            ``resize``, see :func:`_upsample`) and ``appearance`` (``spatial``: alpha is a map
            of the appearance image's positions, the authors'; ``global``: the map's mean over
            positions, broadcast back to (C, h, w) so every consumer sees one shape, and fed to
            the decoder's :class:`FiLM` layers; ``attention``: the same with learnt weights over
            positions; ``vector``: C * h * w means of as many maps, laid out as a (C, h, w)
            code, the whole of it fed to the FiLM layers; ``cross``: the map, as ``spatial``,
            which the decoder reads through its mean (FiLM) and through cross-attention from the
            pose features, see :class:`Decoder`) and ``output_blocks`` (residual blocks of the
            decoder at the image's own resolution; 0, the authors', lets the last up-sampling
            write the pixels).
        stochastic_pose: False where the variant decodes the posterior mean (``ae``, ``drnet``):
            pi is the mean, no sampling.

    Raises:
        ValueError: a code size that does not divide the image size into a power of two.
    """

    def __init__(self, cfg: ModelConfig, stochastic_pose: bool = True):
        super().__init__()
        self.image_size = cfg.image_size
        self.stochastic_pose = stochastic_pose
        kw = _shape(cfg)
        self.pose_encoder = Encoder(2 * cfg.code_channels, **kw)
        self.appearance = cfg.appearance
        # an attention-pooled code needs one more map, the logits of where to look; a vector code
        # C * h * w maps, each averaged over positions
        appearance_maps = {"vector": cfg.code_channels * cfg.code_size**2,
                           "attention": cfg.code_channels + 1}.get(cfg.appearance,
                                                                   cfg.code_channels)
        self.appearance_encoder = Encoder(appearance_maps, **kw)
        if cfg.appearance == "attention":  # uniform weights at the start: the plain mean
            head = self.appearance_encoder.net[-1]
            nn.init.zeros_(head.weight[-1])
            nn.init.zeros_(head.bias[-1:])
        self.decoder = Decoder(cfg.code_channels, upsample=cfg.upsample,
                               appearance="global" if cfg.appearance == "attention"
                               else cfg.appearance, output_blocks=cfg.output_blocks, **kw)

    def encode_pose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(pi | x) of (B, 3, H, W) pixels in [-1, 1]: mean and log-variance, each
        (B, C, h, w) float32 (also under bf16 autocast, so that the KL and the critics' terms are
        computed in float32); the log-variance is clamped to [-30, 10]."""
        mean, logvar = self.pose_encoder(x).float().chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def encode_appearance(self, x: torch.Tensor) -> torch.Tensor:
        """Appearance code alpha (B, C, h, w) of (B, 3, H, W) pixels in [-1, 1]; the same at every
        position for a global code (``model.appearance``); float32 under bf16 autocast too."""
        alpha = self.appearance_encoder(x).float()
        if self.appearance == "vector":  # (B, C * h * w) laid out as a (C, h, w) code
            return alpha.mean((2, 3)).view(len(x), -1, *alpha.shape[2:])
        if self.appearance == "attention":  # a softmax over positions of the last map weighs
            alpha, logits = alpha[:, :-1], alpha[:, -1:]
            weights = logits.flatten(2).softmax(-1).view_as(logits)
            return (alpha * weights).sum((2, 3), keepdim=True).expand_as(alpha)
        if self.appearance == "global":
            return alpha.mean((2, 3), keepdim=True).expand_as(alpha)
        return alpha

    def decode(self, pose: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """Render (B, 3, H, W) pixels from pose and appearance codes; float32 under bf16 autocast
        too, so that the reconstruction term is computed in float32."""
        return self.decoder(pose, appearance).float()

    def transfer_pose(self, pose_image: torch.Tensor) -> torch.Tensor:
        """The pose code that transfer gives the decoder: the posterior mean of q(pi | x),
        (B, C, h, w), for (B, 3, H, W) pixels in [-1, 1]. The leakage probes score this code."""
        return self.encode_pose(pose_image)[0]

    @torch.no_grad()
    def transfer(self, appearance_image: torch.Tensor, pose_image: torch.Tensor) -> torch.Tensor:
        """Appearance of ``appearance_image`` in the pose of ``pose_image`` (pose code from
        :meth:`transfer_pose`); both (B, 3, H, W) in [-1, 1]; returns (B, 3, H, W) clamped to
        [-1, 1]."""
        return self.decode(self.transfer_pose(pose_image),
                           self.encode_appearance(appearance_image)).clamp(-1, 1)


class SeparableCritic(nn.Module):
    """Mutual-information critic T(pi, alpha) = <f(pi), g(alpha)> summed over all entries
    (ICCV 2019, Esser et al., section 3.2). f and g are 1x1-convolution residual stacks, so codes of
    shape (B, C, h, w) and vectors (B, C) both work.

    With an ``image_encoder`` the appearance side reads an image instead of a code: g scores the
    encoder's (B, C', h, w) output of (B, 3, H, W) pixels averaged over positions, broadcast over
    the pose code's positions (``objective.critic_appearance: image``, docs/method.md section 9).

    ``scores(pi, alpha)`` returns the (B, B) matrix of logits l[i, j] = T(pi_i, alpha_j): the
    diagonal holds the joint pairs, any off-diagonal permutation marginal pairs.
    """

    def __init__(self, pose_channels: int, appearance_channels: int, width: int = 512,
                 blocks: int = 1, image_encoder: nn.Module | None = None):
        super().__init__()

        def stack(c_in: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, width, 1),
                                 *[ResBlock(width, 1) for _ in range(blocks)],
                                 _act(), nn.Conv2d(width, width, 1))

        self.f = stack(pose_channels)
        self.g = stack(appearance_channels)
        self.image_encoder = image_encoder
        # Start from logit 0 (chance) instead of the large logits of a random inner product, so
        # early I_T and I_T' estimates do not push gamma around.
        nn.init.zeros_(self.g[-1].weight)
        nn.init.zeros_(self.g[-1].bias)

    @staticmethod
    def _as_map(x: torch.Tensor) -> torch.Tensor:
        return x[:, :, None, None] if x.dim() == 2 else x

    def features(self, pose: torch.Tensor,
                 appearance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened f(pi) and g(alpha), each (B, width * h * w) float32 (also under bf16
        autocast, so that logits, losses and MI estimates are float32)."""
        fp = self.f(self._as_map(pose))
        if self.image_encoder is not None:
            appearance = self.image_encoder(appearance).mean((2, 3), keepdim=True)
        ga = self.g(self._as_map(appearance))
        if ga.shape[2:] != fp.shape[2:]:
            ga = ga.expand_as(fp)
        return fp.float().flatten(1), ga.float().flatten(1)

    def forward(self, pose: torch.Tensor, appearance: torch.Tensor, permutation: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint logits T(pi_i, alpha_i) and marginal logits T(pi_i, alpha_s(i)), each (B,)."""
        fp, ga = self.features(pose, appearance)
        return (fp * ga).sum(1), (fp * ga[permutation]).sum(1)


def _shape(cfg: ModelConfig) -> dict:
    """Keyword arguments of :class:`Encoder` and :class:`Decoder` set by the model section."""
    return dict(image_size=cfg.image_size, code_size=cfg.code_size, channels=cfg.channels,
                max_channels=cfg.max_channels, blocks=cfg.blocks)


def critic_image_encoder(cfg: ModelConfig) -> Encoder:
    """A critic's own encoder of appearance images, (B, 3, H, W) -> (B, code_channels, h, w), the
    same shape as the model's appearance encoder (``objective.critic_appearance: image``)."""
    return Encoder(cfg.code_channels, **_shape(cfg))


def build_model(cfg: Config) -> AppearancePoseModel:
    """The networks of a run: ``cfg.model``, with a stochastic pose code where the variant's record
    (:mod:`rodi.variants`) says so."""
    return AppearancePoseModel(cfg.model,
                               stochastic_pose=variant(cfg.objective.variant).stochastic_pose)

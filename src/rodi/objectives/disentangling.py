"""The objective of ICCV 2019, Esser et al. (sections 3-4) and its ablations, as one module.

Per batch of pairs (x_i, x'_i) sharing an appearance: pi_i ~ q(pi | x_i), alpha'_i = E_alpha(x'_i),
x_hat_i = D(pi_i, alpha'_i). The model minimises

    L = SSE(x_i, x_hat_i) + gamma * KL(q(pi | x_i) || N(0, I)) + penalty(I_T - epsilon)

where I_T is the mutual information between pose and appearance codes estimated by a critic T, the
penalty is an augmented Lagrangian with multiplier lambda, and (variant ``rodi``) gamma is raised
whenever a second critic T', trained on detached codes and never attacked by the encoder, sees more
information than T: the smallest KL weight at which T's estimate can be trusted.

Variants (docs/method.md section 4): ``ae`` deterministic pi, no KL, no constraint; ``variational`` fixed
gamma; ``adversarial`` fixed gamma plus the MI constraint; ``rodi`` adaptive gamma plus the MI
constraint; ``drnet``, the baseline of Denton & Birodkar (NeurIPS 2017) in the same framework:
deterministic pi, the appearance codes of both images of a pair pulled together, and a scene
discriminator on pairs of pose codes (same pair or not) that the pose encoder is trained to confuse.
Both MI critics are trained in every variant, so I_T and I_T' are logged for all of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from rodi.config import ObjectiveConfig
from rodi.models.networks import AppearancePoseModel, SeparableCritic
from rodi.training.distributed import SINGLE

DETERMINISTIC_POSE = ("ae", "drnet")


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


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) in nats, summed over all but the batch dimension: (B,)."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def critic_loss(joint: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
    """Logistic loss of a joint-vs-marginal classifier: 0.5 * [softplus(-l_joint) + softplus(l_marginal)],
    averaged over the batch."""
    return 0.5 * (F.softplus(-joint) + F.softplus(marginal)).mean()


def augmented_lagrangian(c: torch.Tensor, multiplier: torch.Tensor, mu: float) -> torch.Tensor:
    """Penalty of the constraint c <= 0: [mu * c + lambda >= 0] * (lambda * c + 0.5 * mu * c^2)."""
    return (mu * c + multiplier >= 0).to(c.dtype) * (multiplier * c + 0.5 * mu * c.square())


def update_multiplier(multiplier: float, c: float, mu: float) -> float:
    """lambda <- max(0, lambda + mu * c)."""
    return max(0.0, multiplier + mu * c)


class SceneDiscriminator(nn.Module):
    """DRNET's scene discriminator C(pi_1, pi_2): one logit that two pose codes come from the same
    pair (Denton & Birodkar, NeurIPS 2017, section 3). Codes (B, C, h, w) are flattened and
    concatenated; an MLP of ``width`` units scores them."""

    def __init__(self, code_numel: int, width: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * code_numel, width), nn.LeakyReLU(0.2),
                                 nn.Linear(width, width), nn.LeakyReLU(0.2), nn.Linear(width, 1))

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """(B,) logits."""
        return self.net(torch.cat([first.flatten(1), second.flatten(1)], dim=1)).squeeze(1)


def update_gamma(gamma: float, ema_attacked: float, ema_independent: float, cfg: ObjectiveConfig) -> float:
    """gamma <- clip(gamma + l_gamma * (clip(EMA(I_T') - EMA(I_T), 0, 10) - b_gamma), 0, gamma_max)."""
    gap = min(max(ema_independent - ema_attacked, 0.0), 10.0)
    return min(max(gamma + cfg.gamma_lr * (gap - cfg.gamma_bias), 0.0), cfg.gamma_max)


class DisentanglingObjective(nn.Module):
    """Losses, critics and the method's global quantities for one variant.

    Buffers (saved with the module's state dict): ``gamma`` (KL weight), ``multiplier`` (lambda),
    ``ema_mi`` / ``ema_mi_independent`` (raw EMAs of I_T and I_T' in nats) and ``ema_steps``
    (for bias correction).

    Args:
        cfg: objective hyper-parameters (docs/method.md section 5).
        code_channels: channels of the pose and appearance codes.
    """

    def __init__(self, cfg: ObjectiveConfig, code_channels: int, code_size: int = 4):
        super().__init__()
        self.cfg = cfg
        self.critic = SeparableCritic(code_channels, code_channels, cfg.critic_width, cfg.critic_blocks)
        self.independent_critic = SeparableCritic(code_channels, code_channels, cfg.critic_width, cfg.critic_blocks)
        if cfg.variant == "drnet":
            self.scene_discriminator = SceneDiscriminator(code_channels * code_size**2, cfg.critic_width)
        gamma0 = 0.0 if cfg.variant in DETERMINISTIC_POSE else cfg.gamma
        self.register_buffer("gamma", torch.tensor(gamma0, dtype=torch.float64))
        self.register_buffer("multiplier", torch.tensor(cfg.lambda_init, dtype=torch.float64))
        self.register_buffer("ema_mi", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("ema_mi_independent", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("ema_steps", torch.tensor(0, dtype=torch.long))
        self.distributed = SINGLE  # set by the training loop under torchrun

    def critics(self) -> dict[str, nn.Module]:
        """The classifiers with their own optimisers, by name."""
        names = ("critic", "independent_critic", "scene_discriminator")
        return {k: getattr(self, k) for k in names if hasattr(self, k)}

    @property
    def constrained(self) -> bool:
        return self.cfg.variant in ("adversarial", "rodi")

    def constraint_active(self, step: int) -> bool:
        return self.constrained and step >= self.cfg.warmup_steps

    def forward(self, model: AppearancePoseModel, batch: dict, step: int) -> dict:
        """Both losses of one training step, computed in the safe order (docs/method.md section 3).

        The critics see detached codes; the encoder's penalty goes through T with its parameters
        detached, so one backward of ``model_loss + critic_loss`` gives each optimiser exactly its
        own gradients and no module is updated between a forward and its backward.

        Args:
            model: the networks.
            batch: ``pose_image`` x and ``appearance_image`` x', (B, 3, H, W) in [-1, 1], B >= 2.
            step: the training step (the constraint is active from ``warmup_steps`` on).

        Returns:
            dict with scalar tensors ``model_loss``, ``critic_loss``, ``reconstruction`` (SSE per
            example), ``kl`` (nats per example), ``penalty``, ``mi`` (I_T, nats), ``mi_independent``
            (I_T', nats), ``critic_accuracy``, ``independent_critic_accuracy`` and ``constraint``
            (I_T - epsilon, or None while the constraint is inactive).

        Raises:
            ValueError: for a batch of fewer than two pairs.
        """
        x, x_app = batch["pose_image"], batch["appearance_image"]
        dd = self.distributed
        # the pose encoder may see the pose image in other colours; the decoder must still render x
        shard = lambda shape: dd.shard(torch.rand((dd.world_size * shape[0],) + shape[1:], device=x.device))  # noqa: E731
        mean, logvar = model.encode_pose(colour_jitter(x, self.cfg.pose_colour_jitter, draw=shard))
        if self.cfg.variant in DETERMINISTIC_POSE:
            pose = mean
            kl = torch.zeros((), device=x.device)
        else:
            if dd.enabled:  # this process's slice of the global batch's noise
                noise = dd.shard(torch.randn((dd.world_size * mean.shape[0],) + mean.shape[1:],
                                             device=mean.device, dtype=mean.dtype))
            else:
                noise = torch.randn_like(mean)
            pose = mean + (0.5 * logvar).exp() * noise
            kl = kl_standard_normal(mean, logvar).mean()
        appearance = model.encode_appearance(x_app)
        x_hat = model.decode(pose, appearance)
        sse = (x_hat - x).square().flatten(1).sum(1)  # (B,) summed squared error per example
        reconstruction = sse.mean()
        if self.cfg.reconstruction == "calibrated":
            # Gaussian NLL in nats with the variance set to its maximum-likelihood value, the
            # batch's mean squared error (docs/method.md section 9): the gradient of
            # (D / 2) log(MSE), so reconstruction, KL and the MI penalty are nats of one ELBO
            variance = dd.mean(sse.detach().mean()) / x[0].numel()
            reconstruction_loss = reconstruction / (2.0 * variance.clamp_min(self.cfg.min_variance))
        else:  # summed squared error: a Gaussian NLL with variance 1/2 (the authors')
            reconstruction_loss = reconstruction

        # what the critics score: the sample the decoder sees in training (the authors'), or the
        # posterior mean that transfer gives the decoder (objective.critic_code)
        scored = mean if self.cfg.critic_code == "mean" else pose
        # the critics see the detached codes of the whole global batch, the same on every process
        pose_d, appearance_d = dd.gather(scored), dd.gather(appearance)
        s = derangement(pose_d.shape[0], device=x.device)
        fp, ga = self.critic.features(pose_d, appearance_d)
        joint, marginal = (fp * ga).sum(1), (fp * ga[s]).sum(1)
        joint_i, marginal_i = self.independent_critic(pose_d, appearance_d, s)
        closs = critic_loss(joint, marginal) + critic_loss(joint_i, marginal_i)

        penalty = torch.zeros((), device=x.device)
        penalty_loss = penalty
        constraint = None
        if self.constraint_active(step):
            # T(pi_i, alpha_i) with T fixed: f through frozen parameters, g(alpha) reused from T's
            # own forward above (detached inputs and parameters give the same values)
            frozen = {k: v.detach() for k, v in self.critic.f.named_parameters()}
            attacked_f = functional_call(self.critic.f, frozen, (scored,), strict=True).flatten(1)
            attacked_joint = (attacked_f * dd.shard(ga.detach())).sum(1)
            constraint = attacked_joint.mean() - self.cfg.epsilon
            multiplier = self.multiplier.to(constraint.dtype)
            if dd.enabled:
                # the penalty of the global constraint; its gradient reaches each process's codes
                # through the linear term slope * c_local, which all-reduce averages to d P / d theta
                local, constraint = constraint, dd.mean(constraint)
                penalty = augmented_lagrangian(constraint, multiplier, self.cfg.mu)
                slope = (self.cfg.mu * constraint + multiplier >= 0).to(local.dtype) * (multiplier + self.cfg.mu * constraint)
                penalty_loss = slope * local
            else:
                penalty = augmented_lagrangian(constraint, multiplier, self.cfg.mu)
                penalty_loss = penalty
        gamma = self.gamma.to(kl.dtype)
        model_loss = reconstruction_loss + gamma * kl + penalty_loss
        if self.cfg.variant == "drnet":
            drnet_loss, scene_loss = self._drnet(model, x, x_app, pose, appearance, s)
            model_loss = model_loss + drnet_loss
            closs = closs + scene_loss
        accuracy = lambda j, m: 0.5 * ((j > 0).float().mean() + (m < 0).float().mean())  # noqa: E731
        return {
            "model_loss": model_loss,
            "critic_loss": closs,
            "reconstruction": reconstruction,
            "kl": kl,
            "penalty": penalty.detach(),
            "mi": joint.mean().detach(),
            "mi_independent": joint_i.mean().detach(),
            "critic_accuracy": accuracy(joint, marginal),
            "independent_critic_accuracy": accuracy(joint_i, marginal_i),
            "constraint": constraint.detach() if constraint is not None else None,
        }

    def _drnet(self, model: AppearancePoseModel, x: torch.Tensor, x_app: torch.Tensor, pose: torch.Tensor,
               appearance: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """DRNET's two extra terms: the encoders' loss (appearance similarity plus confusing the
        scene discriminator, target 0.5), on the scale of the per-pixel MSE the paper used, and
        the discriminator's own loss on detached pose codes."""
        similarity = (model.encode_appearance(x) - appearance).square().mean()
        pose_other = model.encode_pose(x_app)[0]
        disc = self.scene_discriminator
        dd = self.distributed
        pose_d, other_d = dd.gather(pose), dd.gather(pose_other)
        same, different = disc(pose_d, other_d), disc(pose_d, other_d[s])
        scene_loss = 0.5 * (F.binary_cross_entropy_with_logits(same, torch.ones_like(same))
                            + F.binary_cross_entropy_with_logits(different, torch.zeros_like(different)))
        frozen = {k: v.detach() for k, v in disc.named_parameters()}
        confused = functional_call(disc, frozen, (pose, pose_other))
        adversarial = F.binary_cross_entropy_with_logits(confused, torch.full_like(confused, 0.5))
        pixels = x[0].numel()
        return pixels * (self.cfg.drnet_similarity * similarity + self.cfg.drnet_adversarial * adversarial), scene_loss

    @torch.no_grad()
    def update(self, out: dict, step: int) -> None:
        """After the optimisers stepped: moving averages, lambda (when the constraint is active)
        and, for ``rodi``, gamma (docs/method.md section 3, items 4-5)."""
        d = self.cfg.ema_decay
        self.ema_mi.mul_(d).add_((1 - d) * out["mi"].double())
        self.ema_mi_independent.mul_(d).add_((1 - d) * out["mi_independent"].double())
        self.ema_steps.add_(1)
        if out["constraint"] is not None:
            self.multiplier.fill_(update_multiplier(self.multiplier.item(), out["constraint"].item(), self.cfg.mu))
        if self.cfg.variant == "rodi" and (self.cfg.gamma_in_warmup or step >= self.cfg.warmup_steps):
            ema, ema_i = self.corrected_emas()
            self.gamma.fill_(update_gamma(self.gamma.item(), ema, ema_i, self.cfg))

    def corrected_emas(self) -> tuple[float, float]:
        """Bias-corrected EMA(I_T) and EMA(I_T') in nats."""
        n = int(self.ema_steps.item())
        if n == 0:
            return 0.0, 0.0
        correction = 1.0 - self.cfg.ema_decay**n
        return self.ema_mi.item() / correction, self.ema_mi_independent.item() / correction

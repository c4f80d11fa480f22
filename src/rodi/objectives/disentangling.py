"""The objective of ICCV 2019, Esser et al. (sections 3-4) and its ablations, as one module.

Per batch of pairs (x_i, x'_i) sharing an appearance: pi_i ~ q(pi | x_i), alpha'_i = E_alpha(x'_i),
x_hat_i = D(pi_i, alpha'_i). The model minimises

    L = SSE(x_i, x_hat_i) + gamma * KL(q(pi | x_i) || N(0, I)) + penalty(I_T - epsilon)

where I_T is the mutual information between pose and appearance codes estimated by a critic T, the
penalty is an augmented Lagrangian with multiplier lambda, and (variant ``rodi``) gamma is raised
whenever a second critic T', trained on detached codes and never attacked by the encoder, sees more
information than T: the smallest KL weight at which T's estimate can be trusted.

What each variant switches on (stochastic pose, KL, constraint, adaptive gamma, extra terms) is
its record in :mod:`rodi.variants` (docs/method.md section 4); this module reads the record and
never a variant's name. Extra terms of other methods live in modules of their own
(:mod:`rodi.objectives.drnet`). Both MI critics are trained in every variant, so I_T and I_T' are
logged for all of them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from rodi.config import ModelConfig, ObjectiveConfig
from rodi.distributed import SINGLE
from rodi.models.networks import AppearancePoseModel, SeparableCritic, critic_image_encoder
from rodi.objectives import drnet
from rodi.objectives.losses import (
    augmented_lagrangian,
    colour_jitter,
    colour_map,
    critic_loss,
    derangement,
    kl_standard_normal,
    update_gamma,
    update_multiplier,
    zoom,
)
from rodi.variants import variant

# loss terms of other methods, by the name a variant record gives in ``extra_terms``
EXTRA_TERMS = {"drnet": drnet}


class DisentanglingObjective(nn.Module):
    """Losses, critics and the method's global quantities for one variant (its record in
    :mod:`rodi.variants`).

    Buffers (saved with the module's state dict): ``gamma`` (KL weight), ``multiplier`` (lambda),
    ``ema_mi`` / ``ema_mi_independent`` (raw EMAs of I_T and I_T' in nats) and ``ema_steps``
    (for bias correction).

    Args:
        cfg: objective hyper-parameters (docs/method.md section 5).
        code_channels, code_size: the pose and appearance codes are (code_channels, code_size,
            code_size).
        model: the model section, needed where the critics read appearance images
            (``cfg.critic_appearance == "image"``) to build their encoders.

    Raises:
        KeyError: an unknown ``cfg.variant``.
        ValueError: image critics without ``model``.
    """

    def __init__(self, cfg: ObjectiveConfig, code_channels: int, code_size: int,
                 model: ModelConfig | None = None):
        super().__init__()
        self.cfg = cfg
        self.variant = variant(cfg.variant)
        if cfg.critic_appearance == "image" and model is None:
            raise ValueError("objective.critic_appearance=image needs the model section to build "
                             "the critics' image encoders")

        def make_critic() -> SeparableCritic:
            encoder = critic_image_encoder(model) if cfg.critic_appearance == "image" else None
            return SeparableCritic(code_channels, code_channels, cfg.critic_width,
                                   cfg.critic_blocks, image_encoder=encoder)

        self.critic = make_critic()
        self.independent_critic = make_critic()
        self.extra_terms = (EXTRA_TERMS[self.variant.extra_terms] if self.variant.extra_terms
                            else None)
        self._critic_names = ["critic", "independent_critic"]
        if self.extra_terms is not None:
            for name, module in self.extra_terms.classifiers(cfg, code_channels, code_size).items():
                self.add_module(name, module)
                self._critic_names.append(name)
        gamma0 = cfg.gamma if self.variant.kl else 0.0
        self.register_buffer("gamma", torch.tensor(gamma0, dtype=torch.float64))
        self.register_buffer("multiplier", torch.tensor(cfg.lambda_init, dtype=torch.float64))
        self.register_buffer("ema_mi", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("ema_mi_independent", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("ema_steps", torch.tensor(0, dtype=torch.long))
        self.distributed = SINGLE  # set by the training loop under torchrun

    def critics(self) -> dict[str, nn.Module]:
        """The classifiers with their own optimisers, by name: T, T' and any of the extra terms."""
        return {name: getattr(self, name) for name in self._critic_names}

    def constraint_active(self, step: int) -> bool:
        """Whether the MI constraint is on at training ``step``: in variants with the constraint,
        from ``warmup_steps`` on."""
        return self.variant.constraint and step >= self.cfg.warmup_steps

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
            example), ``kl`` (nats per example), ``penalty``, ``mi`` (I_T, nats),
            ``mi_independent`` (I_T', nats), ``critic_accuracy``, ``independent_critic_accuracy``
            and ``constraint`` (I_T - epsilon, or None while the constraint is inactive).

        Raises:
            ValueError: for a batch of fewer than two pairs.
        """
        x, x_app = batch["pose_image"], batch["appearance_image"]
        mean, pose, kl = self._pose_code(model, x)
        appearance = model.encode_appearance(x_app)
        reconstruction, reconstruction_loss = self._reconstruction(model.decode(pose, appearance),
                                                                   x)
        # what the critics score: the sample the decoder sees in training (the authors'), or the
        # posterior mean that transfer gives the decoder (objective.critic_code)
        scored = mean if self.cfg.critic_code == "mean" else pose
        # what the critics compare it with: the appearance code, or the appearance image itself
        critics = self._critics(scored, x_app if self.cfg.critic_appearance == "image"
                                else appearance)
        penalty, penalty_loss, constraint = self._penalty(scored,
                                                          critics["appearance_features"], step)
        model_loss = reconstruction_loss + self.gamma.to(kl.dtype) * kl + penalty_loss
        critic_loss_ = critics["loss"]
        if self.extra_terms is not None:
            extra_model, extra_critic = self.extra_terms.losses(self, model, x, x_app, pose,
                                                                appearance, critics["negatives"])
            model_loss, critic_loss_ = model_loss + extra_model, critic_loss_ + extra_critic
        return {
            "model_loss": model_loss,
            "critic_loss": critic_loss_,
            "reconstruction": reconstruction,
            "kl": kl,
            "penalty": penalty.detach(),
            "mi": critics["joint"].mean().detach(),
            "mi_independent": critics["joint_independent"].mean().detach(),
            "critic_accuracy": _accuracy(critics["joint"], critics["marginal"]),
            "independent_critic_accuracy": _accuracy(critics["joint_independent"],
                                                     critics["marginal_independent"]),
            "constraint": constraint.detach() if constraint is not None else None,
        }

    def _pose_code(self, model: AppearancePoseModel, x: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The posterior mean of q(pi | x) (B, C, h, w), the code the decoder sees (a sample for a
        stochastic pose, else the mean) and the KL to N(0, I) in nats per example (0 without)."""
        dd = self.distributed

        def shard(shape):  # this process's slice of draws for the global batch
            return dd.shard(torch.rand((dd.world_size * shape[0],) + shape[1:], device=x.device))

        # the pose encoder may see the pose image in other colours; the decoder must still render x
        change = colour_map if self.cfg.pose_colour_change == "map" else colour_jitter
        seen = zoom(x, self.cfg.pose_zoom, draw=shard)  # and at another size (pose_zoom)
        mean, logvar = model.encode_pose(change(seen, self.cfg.pose_colour_jitter, draw=shard))
        if not self.variant.stochastic_pose:
            return mean, mean, torch.zeros((), device=x.device)
        if dd.enabled:  # this process's slice of the global batch's noise
            noise = dd.shard(torch.randn((dd.world_size * mean.shape[0],) + mean.shape[1:],
                                         device=mean.device, dtype=mean.dtype))
        else:
            noise = torch.randn_like(mean)
        return mean, mean + (0.5 * logvar).exp() * noise, kl_standard_normal(mean, logvar).mean()

    def _reconstruction(self, x_hat: torch.Tensor,
                        x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The summed squared error per example (the number logged) and the reconstruction term of
        the loss (``objective.reconstruction``)."""
        sse = (x_hat - x).square().flatten(1).sum(1)  # (B,) summed squared error per example
        reconstruction = sse.mean()
        if self.cfg.reconstruction == "sse":
            return reconstruction, reconstruction  # a Gaussian NLL with variance 1/2 (the authors')
        # a NLL in nats with its scale at the maximum-likelihood value (docs/method.md section 9),
        # so reconstruction, KL and the MI penalty are nats of one ELBO. calibrated: a Gaussian,
        # variance the batch's mean squared error, the gradient of (D / 2) log(MSE). laplace: the
        # gradient of D log(MAE), scale the batch's mean absolute error; measured and not
        # adopted, it treats a thin body as outlier pixels and learns its pose far slower
        if self.cfg.reconstruction == "calibrated":
            summed, factor = sse, 2.0
        else:
            summed, factor = (x_hat - x).abs().flatten(1).sum(1), 1.0
        scale = self.distributed.mean(summed.detach().mean()) / x[0].numel()
        return reconstruction, summed.mean() / (factor * scale.clamp_min(self.cfg.min_variance))

    def _critics(self, scored: torch.Tensor, appearance: torch.Tensor) -> dict:
        """T and T' on the detached codes of the whole global batch (the same on every process):
        their logits, loss, the negatives' derangement and g(alpha), reused by the penalty."""
        dd = self.distributed
        pose_d, appearance_d = dd.gather(scored), dd.gather(appearance)
        s = derangement(pose_d.shape[0], device=scored.device)
        fp, ga = self.critic.features(pose_d, appearance_d)
        joint, marginal = (fp * ga).sum(1), (fp * ga[s]).sum(1)
        joint_i, marginal_i = self.independent_critic(pose_d, appearance_d, s)
        return {"joint": joint, "marginal": marginal, "joint_independent": joint_i,
                "marginal_independent": marginal_i, "negatives": s, "appearance_features": ga,
                "loss": critic_loss(joint, marginal) + critic_loss(joint_i, marginal_i)}

    def _penalty(self, scored: torch.Tensor, appearance_features: torch.Tensor, step: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The augmented-Lagrangian penalty of I_T <= epsilon on the pose encoder: its value, the
        term of the loss, and the constraint I_T - epsilon (None, with zeros, while inactive)."""
        zero = torch.zeros((), device=scored.device)
        if not self.constraint_active(step):
            return zero, zero, None
        dd = self.distributed
        # T(pi_i, alpha_i) with T fixed: f through frozen parameters, g(alpha) reused from T's
        # own forward (detached inputs and parameters give the same values)
        frozen = {k: v.detach() for k, v in self.critic.f.named_parameters()}
        attacked_f = functional_call(self.critic.f, frozen, (scored,), strict=True)
        attacked_f = attacked_f.float().flatten(1)
        attacked_joint = (attacked_f * dd.shard(appearance_features.detach())).sum(1)
        constraint = attacked_joint.mean() - self.cfg.epsilon
        multiplier = self.multiplier.to(constraint.dtype)
        if not dd.enabled:
            penalty = augmented_lagrangian(constraint, multiplier, self.cfg.mu)
            return penalty, penalty, constraint
        # the penalty of the global constraint; its gradient reaches each process's codes through
        # the linear term slope * c_local, which all-reduce averages to d P / d theta
        local, constraint = constraint, dd.mean(constraint)
        penalty = augmented_lagrangian(constraint, multiplier, self.cfg.mu)
        active = (self.cfg.mu * constraint + multiplier >= 0).to(local.dtype)
        return penalty, active * (multiplier + self.cfg.mu * constraint) * local, constraint

    @torch.no_grad()
    def update(self, out: dict, step: int) -> None:
        """After the optimisers stepped: moving averages, lambda (when the constraint is active)
        and, with an adaptive gamma, gamma (docs/method.md section 3, items 4-5)."""
        d = self.cfg.ema_decay
        self.ema_mi.mul_(d).add_((1 - d) * out["mi"].double())
        self.ema_mi_independent.mul_(d).add_((1 - d) * out["mi_independent"].double())
        self.ema_steps.add_(1)
        if out["constraint"] is not None:
            self.multiplier.fill_(update_multiplier(self.multiplier.item(),
                                                    out["constraint"].item(), self.cfg.mu))
        if self.variant.adaptive_gamma and (self.cfg.gamma_in_warmup
                                            or step >= self.cfg.warmup_steps):
            ema, ema_i = self.corrected_emas()
            self.gamma.fill_(update_gamma(self.gamma.item(), ema, ema_i, self.cfg))

    def corrected_emas(self) -> tuple[float, float]:
        """Bias-corrected EMA(I_T) and EMA(I_T') in nats."""
        n = int(self.ema_steps.item())
        if n == 0:
            return 0.0, 0.0
        correction = 1.0 - self.cfg.ema_decay**n
        return self.ema_mi.item() / correction, self.ema_mi_independent.item() / correction


def _accuracy(joint: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
    """A critic's accuracy: the mean of joint logits > 0 and marginal logits < 0."""
    return 0.5 * ((joint > 0).float().mean() + (marginal < 0).float().mean())

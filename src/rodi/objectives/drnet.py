"""DRNET's extra terms (Denton & Birodkar, NeurIPS 2017) in rodi's framework: the variant ``drnet``.

With a deterministic pose code and no KL (its record in :mod:`rodi.variants`), DRNET adds two
things to the reconstruction across the pair: the appearance codes of the two images of a pair are
pulled together (MSE), and a scene discriminator C on pairs of pose codes (same pair or not) is
confused by the pose encoder (target 0.5). Both are on the scale of the per-pixel MSE the paper
used, multiplied by the pixels per image to sit beside rodi's summed squared error
(docs/method.md section 4).

The objective calls :func:`classifiers` once, registers what it returns as its own submodules (each
gets an optimiser, like the MI critics), and adds :func:`losses` to its two losses at every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from rodi.config import ObjectiveConfig
from rodi.distributed import Distributed
from rodi.models.networks import AppearancePoseModel


class SceneDiscriminator(nn.Module):
    """DRNET's scene discriminator C(pi_1, pi_2): one logit that two pose codes come from the same
    pair (Denton & Birodkar, NeurIPS 2017, section 3). Codes (B, C, h, w) are flattened and
    concatenated; an MLP of ``width`` units scores them."""

    def __init__(self, code_numel: int, width: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * code_numel, width), nn.LeakyReLU(0.2),
                                 nn.Linear(width, width), nn.LeakyReLU(0.2), nn.Linear(width, 1))

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """(B,) float32 logits for two (B, C, h, w) pose codes."""
        return self.net(torch.cat([first.flatten(1), second.flatten(1)], dim=1)).float().squeeze(1)


def classifiers(cfg: ObjectiveConfig, code_channels: int, code_size: int) -> dict[str, nn.Module]:
    """The classifiers DRNET trains beside the networks, by the name the objective registers them
    under: the scene discriminator, ``objective.critic_width`` units wide."""
    return {"scene_discriminator": SceneDiscriminator(code_channels * code_size**2,
                                                      cfg.critic_width)}


def losses(objective: nn.Module, model: AppearancePoseModel, x: torch.Tensor, x_app: torch.Tensor,
           pose: torch.Tensor, appearance: torch.Tensor, negatives: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """DRNET's two terms of one step.

    Args:
        objective: the :class:`~rodi.objectives.disentangling.DisentanglingObjective`, holding the
            ``scene_discriminator``, ``cfg`` and ``distributed``.
        x, x_app: the pose and appearance images of the pairs, (B, 3, H, W) in [-1, 1].
        pose, appearance: pi(x) and alpha(x'), (B, C, h, w).
        negatives: (world_size * B,) the derangement the critics use for marginal pairs.

    Returns:
        The encoders' term (appearance similarity plus confusing the discriminator through its
        detached parameters), and the discriminator's own loss on detached pose codes.
    """
    cfg: ObjectiveConfig = objective.cfg
    dd: Distributed = objective.distributed
    disc = objective.scene_discriminator
    similarity = (model.encode_appearance(x) - appearance).square().mean()
    pose_other = model.encode_pose(x_app)[0]
    pose_d, other_d = dd.gather(pose), dd.gather(pose_other)
    same, different = disc(pose_d, other_d), disc(pose_d, other_d[negatives])
    scene_loss = 0.5 * (F.binary_cross_entropy_with_logits(same, torch.ones_like(same))
                        + F.binary_cross_entropy_with_logits(different,
                                                             torch.zeros_like(different)))
    frozen = {k: v.detach() for k, v in disc.named_parameters()}
    confused = functional_call(disc, frozen, (pose, pose_other))
    adversarial = F.binary_cross_entropy_with_logits(confused, torch.full_like(confused, 0.5))
    pixels = x[0].numel()
    return (pixels * (cfg.drnet_similarity * similarity + cfg.drnet_adversarial * adversarial),
            scene_loss)

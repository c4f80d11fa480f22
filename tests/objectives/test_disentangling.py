import math

import pytest
import torch

from rodi.config import ObjectiveConfig
from rodi.models.networks import SeparableCritic
from rodi.objectives.disentangling import (augmented_lagrangian, critic_loss, derangement,
                                           update_gamma, update_multiplier)


@pytest.mark.parametrize("n", [2, 3, 5, 7, 33, 128])
def test_derangement_has_no_fixed_point(n):
    g = torch.Generator().manual_seed(n)
    for _ in range(20):
        s = derangement(n, g)
        assert sorted(s.tolist()) == list(range(n))
        assert (s != torch.arange(n)).all()


def test_derangement_of_one_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1)


def test_multiplier_update_is_projected_gradient_ascent():
    assert update_multiplier(0.0, 0.5, mu=0.1) == pytest.approx(0.05)
    assert update_multiplier(0.05, -1.0, mu=0.1) == 0.0  # never negative
    assert update_multiplier(1.0, -0.2, mu=0.1) == pytest.approx(0.98)


def test_penalty_vanishes_when_the_constraint_is_inactive():
    c = torch.tensor(-2.0)
    assert augmented_lagrangian(c, torch.tensor(0.1), 0.1).item() == 0.0  # mu*c + lambda < 0
    c = torch.tensor(0.5)
    assert augmented_lagrangian(c, torch.tensor(0.2), 0.1).item() == pytest.approx(0.2 * 0.5 + 0.05 * 0.25)


def test_gamma_rises_when_the_independent_critic_sees_more_and_decays_otherwise():
    cfg = ObjectiveConfig(gamma_lr=0.01, gamma_bias=0.01, gamma_max=5.0)
    assert update_gamma(1.0, 0.1, 0.6, cfg) == pytest.approx(1.0 + 0.01 * (0.5 - 0.01))
    assert update_gamma(1.0, 0.6, 0.1, cfg) == pytest.approx(1.0 - 0.01 * 0.01)  # gap clipped at 0
    assert update_gamma(1.0, 0.0, 50.0, cfg) == pytest.approx(1.0 + 0.01 * (10 - 0.01))  # gap clipped at 10
    assert update_gamma(0.00005, 0.6, 0.1, cfg) == 0.0
    assert update_gamma(4.999, 0.0, 10.0, cfg) == 5.0


def _train_critic(rho: float, d: int, steps: int = 1500, batch: int = 256) -> float:
    torch.manual_seed(0)
    critic = SeparableCritic(d, d, width=64)
    opt = torch.optim.Adam(critic.parameters(), lr=2e-3)

    def sample(n):
        x = torch.randn(n, d)
        y = rho * x + math.sqrt(1 - rho**2) * torch.randn(n, d)
        return x, y

    for _ in range(steps):
        x, y = sample(batch)
        joint, marginal = critic(x, y, derangement(batch))
        loss = critic_loss(joint, marginal)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        x, y = sample(20000)
        joint, _ = critic(x, y, derangement(20000))
    return joint.mean().item()


def test_critic_estimates_the_mutual_information_of_correlated_gaussians():
    rho, d = 0.8, 2
    true_mi = -0.5 * d * math.log(1 - rho**2)  # 1.02 nats
    assert _train_critic(rho, d) == pytest.approx(true_mi, abs=0.15)


def test_critic_estimates_zero_for_independent_gaussians():
    assert abs(_train_critic(0.0, 2)) < 0.05

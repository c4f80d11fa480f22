import math

import pytest
import torch
import torch.nn.functional as F

from rodi.evaluation.probes import leakage_probes, posthoc_mutual_information, summarize_probes

APPEARANCE = ("body", "hair")
POSE = ("action", "frame")
CLASSES = {"body": 6, "hair": 6, "action": 3, "frame": 8}


def _labels(n: int, g: torch.Generator) -> dict:
    return {k: torch.randint(c, (n,), generator=g) for k, c in CLASSES.items()}


def _one_hot(labels: dict, keys) -> torch.Tensor:
    return torch.cat([F.one_hot(labels[k], CLASSES[k]).float() for k in keys], dim=1)


def _codes(n: int, seed: int, pose_code, appearance_code) -> dict:
    g = torch.Generator().manual_seed(seed)
    labels = _labels(n, g)
    return {"pose": pose_code(labels, g), "appearance": appearance_code(labels, g), **labels}


def test_probes_read_one_hot_labels_perfectly_and_noise_at_chance():
    def noise(labels, g):
        return torch.randn(len(labels["body"]), 16, generator=g)

    def make(seed):
        return _codes(2000, seed, pose_code=lambda labels, g: _one_hot(labels, POSE),
                      appearance_code=noise)

    probes = leakage_probes(make(0), make(1), APPEARANCE, POSE)
    for k in POSE:
        assert probes["pose_code"][k]["accuracy"] > 0.99
        assert (probes["appearance_code"][k]["accuracy"]
                < probes["appearance_code"][k]["chance"] + 0.08)
    for k in APPEARANCE:
        assert probes["pose_code"][k]["accuracy"] < probes["pose_code"][k]["chance"] + 0.08
    summary = summarize_probes(probes, APPEARANCE, POSE)
    assert summary["pose_to_pose"] > 0.99
    assert summary["pose_to_appearance"] < summary["pose_to_appearance_chance"] + 0.08


def test_probes_detect_an_appearance_leak_into_the_pose_code():
    def leak(labels, g):
        return torch.cat([_one_hot(labels, POSE), _one_hot(labels, ("hair",))], 1)

    def make(seed):
        return _codes(2000, seed, pose_code=leak,
                      appearance_code=lambda labels, g: _one_hot(labels, APPEARANCE))

    probes = leakage_probes(make(0), make(1), APPEARANCE, POSE)
    assert probes["pose_code"]["hair"]["accuracy"] > 0.99
    assert probes["appearance_code"]["body"]["accuracy"] > 0.99


def _gaussians(rho: float, d: int, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = rho * x + math.sqrt(1 - rho**2) * torch.randn(n, d, generator=g)
    return x, y


def test_posthoc_mi_is_near_zero_for_independent_codes():
    assert abs(posthoc_mutual_information(*_gaussians(0.0, 4, 8000, 0), steps=800)) < 0.05


def test_posthoc_mi_matches_correlated_gaussians():
    rho, d = 0.7, 3
    true_mi = -0.5 * d * math.log(1 - rho**2)  # 1.01 nats
    estimate = posthoc_mutual_information(*_gaussians(rho, d, 8000, 1), steps=1500)
    assert estimate == pytest.approx(true_mi, abs=0.15)


def test_posthoc_mi_needs_a_few_pairs():
    with pytest.raises(ValueError, match="at least 8"):
        posthoc_mutual_information(torch.zeros(2, 3), torch.zeros(2, 3))

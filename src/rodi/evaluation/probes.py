"""How much each code knows: leakage probes and a post-hoc mutual-information estimate on frozen
codes (issue: the paper's claim measured side by side).

A probe is a small classifier trained on codes of training characters and scored on codes of
held-out characters. A disentangled model's pose code predicts appearance attributes at chance
level and its appearance code predicts pose labels at chance level, while each code predicts its
own labels well.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rodi.models.networks import AppearancePoseModel, SeparableCritic
from rodi.objectives.disentangling import critic_loss, derangement

POSE_LABELS = ("action", "direction", "frame")
CODES = ("pose", "pose_mean", "appearance")


@torch.no_grad()
def encode_codes(model: AppearancePoseModel, sheets, split: str, n: int, seed: int,
                 batch_size: int = 500) -> dict[str, torch.Tensor]:
    """Codes and labels of ``n`` random (character, pose) images of ``split``.

    Returns ``pose`` (n, D_pi): a sample of q(pi | x) as the decoder and critics see it in training
    (equal to the mean for deterministic variants); ``pose_mean`` (n, D_pi): the posterior mean,
    as transfer uses it; ``appearance`` (n, D_alpha); and one (n,) long tensor per label (the varied
    layers, action, direction, frame).
    """
    g = torch.Generator().manual_seed(seed)
    chars = sheets.split(split)
    character = chars[torch.randint(len(chars), (n,), generator=g)]
    pose = torch.randint(sheets.num_poses, (n,), generator=g)
    device = next(model.parameters()).device
    samples, means, appearance_codes = [], [], []
    for c, p in zip(character.split(batch_size), pose.split(batch_size)):
        x = sheets.render(c, p).to(device)
        sample, mean = _pose_codes(model, x, g)
        samples.append(sample)
        means.append(mean)
        appearance_codes.append(model.encode_appearance(x).flatten(1).cpu())
    out = {"pose": torch.cat(samples), "pose_mean": torch.cat(means),
           "appearance": torch.cat(appearance_codes)}
    out.update({k: v for k, v in sheets.labels(character, pose).items()
                if k not in ("character", "pose")})
    return out


def _pose_codes(model: AppearancePoseModel, x: torch.Tensor, g: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """A posterior sample (the mean for deterministic models) and the exact code that transfer
    gives the decoder (:meth:`AppearancePoseModel.transfer_pose`), flattened, on the CPU."""
    mean, logvar = model.encode_pose(x)
    mean, logvar = mean.flatten(1).cpu(), logvar.flatten(1).cpu()
    code = model.transfer_pose(x).flatten(1).cpu()
    if not model.stochastic_pose:
        return mean, code
    return mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=g), code


def probe_accuracies(train_x: torch.Tensor, train_y: dict[str, torch.Tensor], test_x: torch.Tensor,
                     test_y: dict[str, torch.Tensor], steps: int = 300, hidden: int = 256,
                     seed: int = 0) -> dict[str, float]:
    """Accuracy in [0, 1] on ``test`` of an MLP probe (one hidden layer, one linear head per label)
    trained on ``train`` with the sum of the heads' cross-entropies, full-batch Adam.

    Inputs are standardised with the training mean and std.

    Args:
        train_x, test_x: (N, D) float codes.
        train_y, test_y: per label name, (N,) long labels.
    """
    torch.manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)

    def norm(x):
        return (x - mean) / std

    classes = {k: int(max(train_y[k].max(), test_y[k].max()).item()) + 1 for k in train_y}
    trunk = nn.Sequential(nn.Linear(train_x.shape[1], hidden), nn.ReLU())
    heads = nn.ModuleDict({k: nn.Linear(hidden, c) for k, c in classes.items()})
    opt = torch.optim.Adam([*trunk.parameters(), *heads.parameters()], lr=3e-3, weight_decay=1e-4)
    xt = norm(train_x)
    with torch.enable_grad():
        for _ in range(steps):
            h = trunk(xt)
            loss = sum(F.cross_entropy(head(h), train_y[k]) for k, head in heads.items())
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        h = trunk(norm(test_x))
        return {k: (head(h).argmax(1) == test_y[k]).float().mean().item()
                for k, head in heads.items()}


def leakage_probes(train: dict, test: dict, appearance_labels: tuple[str, ...],
                   pose_labels: tuple[str, ...] = POSE_LABELS, steps: int = 300,
                   seed: int = 0) -> dict:
    """Every (code, label) probe: appearance and pose labels from each code (``pose``,
    ``pose_mean`` where present, ``appearance``), each initialised from ``seed`` (see
    :func:`probe_accuracies`).

    Args:
        train, test: outputs of :func:`encode_codes` (or any dicts with ``pose``/``appearance``
            codes and long label tensors).

    Returns:
        ``{"pose_code": {label: {"accuracy", "chance"}}, "appearance_code": {...}, ...}`` where
        chance is the test accuracy of always predicting the most frequent training label.
    """
    labels = appearance_labels + pose_labels
    chance = {}
    for k in labels:
        majority = torch.bincount(train[k]).argmax()
        chance[k] = (test[k] == majority).float().mean().item()
    out: dict = {}
    for code in [c for c in CODES if c in train]:
        acc = probe_accuracies(train[code], {k: train[k] for k in labels}, test[code],
                               {k: test[k] for k in labels}, steps, seed=seed)
        out[f"{code}_code"] = {k: {"accuracy": acc[k], "chance": chance[k]} for k in labels}
    return out


def summarize_probes(probes: dict, appearance_labels: tuple[str, ...],
                     pose_labels: tuple[str, ...] = POSE_LABELS) -> dict[str, float]:
    """Mean accuracy of each (code -> label group) direction: ``pose_to_appearance`` (leak),
    ``appearance_to_pose`` (leak), ``appearance_to_appearance`` and ``pose_to_pose`` (and
    ``pose_mean_to_...`` where the posterior mean was probed), each beside its mean chance level
    (``..._chance``)."""
    out = {}
    for code in [c for c in CODES if f"{c}_code" in probes]:
        for group, labels in (("appearance", appearance_labels), ("pose", pose_labels)):
            entries = [probes[f"{code}_code"][k] for k in labels]
            out[f"{code}_to_{group}"] = sum(e["accuracy"] for e in entries) / len(entries)
            out[f"{code}_to_{group}_chance"] = sum(e["chance"] for e in entries) / len(entries)
    return out


def posthoc_mutual_information(pose: torch.Tensor, appearance: torch.Tensor, steps: int = 1500,
                               batch_size: int = 256, width: int = 64, seed: int = 0,
                               eval_every: int = 50) -> float:
    """Mutual information in nats between paired codes, estimated by a fresh separable critic.

    The critic is trained on the first half of the pairs. The second half is split in two: every
    ``eval_every`` steps the critic's logistic loss is measured on its first quarter of the data
    (selection), and the estimate (mean joint logit) is read on the last quarter (report) at the
    step with the lowest selection loss. Selecting and reporting on different pairs keeps the
    choice of step from biasing the number reported, and selecting on held-out pairs keeps an
    overfitting critic from biasing it below zero.

    Args:
        pose: (N, D_pi) codes; appearance: (N, D_alpha) codes; row i of both belong together.
            N >= 8.

    Returns:
        The estimate in nats.

    Raises:
        ValueError: for fewer than 8 pairs.
    """
    if len(pose) < 8:
        raise ValueError("need at least 8 code pairs to estimate mutual information, got "
                         f"{len(pose)}")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mean_p, std_p = pose.mean(0), pose.std(0).clamp_min(1e-6)
    mean_a, std_a = appearance.mean(0), appearance.std(0).clamp_min(1e-6)
    p, a = (pose - mean_p) / std_p, (appearance - mean_a) / std_a
    half = len(p) // 2
    third = half + (len(p) - half) // 2  # selection pairs: [half, third), report pairs: [third, N)
    select_perm, report_perm = derangement(third - half, g), derangement(len(p) - third, g)
    critic = SeparableCritic(p.shape[1], a.shape[1], width=width)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
    b = min(batch_size, half)
    best_loss, best_estimate = math.inf, 0.0
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            with torch.no_grad():
                loss = critic_loss(*critic(p[half:third], a[half:third], select_perm)).item()
                if loss < best_loss:
                    best_loss = loss
                    best_estimate = critic(p[third:], a[third:], report_perm)[0].mean().item()
        if step == steps:
            break
        idx = torch.randint(half, (b,), generator=g)
        with torch.enable_grad():
            joint, marginal = critic(p[idx], a[idx], derangement(b, g))
            loss = critic_loss(joint, marginal)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return best_estimate


@torch.no_grad()
def pair_codes(model: AppearancePoseModel, sheets, split: str, n: int, seed: int,
               batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose codes of x (a posterior sample, and the mean) and appearance codes of x' for ``n``
    pairs (x, x') of one character in two poses from ``split``: the pairs whose dependence the
    method constrains. Returns (samples, means, appearances), each (n, D)."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    samples, means, appearances = [], [], []
    for start in range(0, n, batch_size):
        batch = sheets.sample_pairs(min(batch_size, n - start), g, split=split)
        sample, mean = _pose_codes(model, batch["pose_image"].to(device), g)
        samples.append(sample)
        means.append(mean)
        appearances.append(model.encode_appearance(batch["appearance_image"].to(device)).flatten(1).cpu())
    return torch.cat(samples), torch.cat(means), torch.cat(appearances)

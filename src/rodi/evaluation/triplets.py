"""The paper's Sprites benchmark: transfer error on held-out triplets (ICCV 2019, Esser et al.,
section 4.1; docs/method.md section 6)."""

from __future__ import annotations

from collections import defaultdict

import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from rodi.evaluation.judges import judge_transfers, target_equivalents, trivial_outputs
from rodi.models.networks import AppearancePoseModel

MAX_PSNR_DB = 100.0  # stands in for the infinite PSNR of an exact copy, so summaries stay finite


def image_quality(images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image MSE, SSIM and PSNR (torchmetrics; Wang et al. 2004 with an 11-pixel Gaussian
    window) of (B, 3, H, W) images against targets, pixels in [-1, 1] (data range 2).

    Returns:
        ``mse``: (B,); ``ssim``: (B,) in [-1, 1], 1 for an exact copy; ``psnr``: (B,) in dB, at
        most ``MAX_PSNR_DB``.
    """
    images, targets = images.float(), targets.float()
    return {
        "mse": (images - targets).square().flatten(1).mean(1),
        "ssim": structural_similarity_index_measure(images, targets, data_range=2.0,
                                                    reduction="none"),
        "psnr": peak_signal_noise_ratio(images, targets, data_range=2.0, reduction="none",
                                        dim=(1, 2, 3)).clamp(max=MAX_PSNR_DB),
    }


def _add_quality(scores: dict, images: torch.Tensor, targets: torch.Tensor, quality: bool) -> None:
    """Append per-image ``transfer`` MSE and, with ``quality``, ``ssim`` and ``psnr`` to
    ``scores``."""
    if not quality:
        scores["transfer"].append((images - targets).square().flatten(1).mean(1).cpu())
        return
    for k, v in image_quality(images, targets).items():
        scores["transfer" if k == "mse" else k].append(v.cpu())


@torch.no_grad()
def triplet_errors(model: AppearancePoseModel, sheets, num_triplets: int = 8000,
                   seed: int = 0, batch_size: int = 250, judge=None, quality: bool = True,
                   split: str = "test") -> dict[str, torch.Tensor]:
    """Per-triplet errors on held-out characters of a source with exact targets (``sprites``,
    ``mocap``, ``flare``), pixels in [-1, 1], posterior mean for pi.

    For each triplet: appearance input = character A in pose q, pose input = character B != A in
    pose p, target = A in pose p rendered from the sheets.

    Args:
        judge: a :class:`rodi.evaluation.judges.Judge` of the source, or None.
        quality: also SSIM and PSNR (off for the quick validation during training).
        split: ``test`` (reports) or ``validation`` (model selection during training).

    Returns:
        ``transfer``: (num_triplets,) MSE between D(mean pi(pose input), alpha(appearance input))
        and the target, with ``ssim`` and ``psnr`` (dB) of the same pairs (see
        :func:`image_quality`); ``reconstruction``: (num_triplets,) MSE of D(mean pi(x), alpha(x))
        against x for the appearance inputs x; with a judge, also the per-triplet scores of
        :func:`rodi.evaluation.judges.judge_transfers`, with those reconstructions' appearance
        scored as ``self_reconstruction``.
    """
    device = next(model.parameters()).device
    indices = sheets.triplet_indices(num_triplets, seed, split=split)
    scores = defaultdict(list)
    trivial = None
    if judge is not None:  # the constant images a transfer must beat, from the same targets
        a, _, p, _ = indices.unbind(1)
        trivial = trivial_outputs(torch.cat([sheets.render(ac, pc) for ac, pc in
                                             zip(a.split(batch_size), p.split(batch_size))]))
    for chunk in indices.split(batch_size):
        batch = sheets.triplets(chunk)
        app, pose, target = (batch[k].to(device)
                             for k in ("appearance_image", "pose_image", "target"))
        out = model.transfer(app, pose)
        _add_quality(scores, out, target, quality)
        rec = model.transfer(app, app)
        scores["reconstruction"].append((rec - app).square().flatten(1).mean(1).cpu())
        if judge is not None:
            batch.update(target_equivalents(sheets, chunk))
            for k, v in judge_transfers(judge, batch, out, trivial, reconstructions=rec).items():
                scores[k].append(v)
    return {k: torch.cat(v) for k, v in scores.items()}


@torch.no_grad()
def pair_errors(model: AppearancePoseModel, source, n: int = 8000, seed: int = 0,
                batch_size: int = 250, quality: bool = True,
                split: str = "test") -> dict[str, torch.Tensor]:
    """Per-pair errors on held-out identities (``split``: ``test`` for reports, ``validation`` for
    model selection) of user data (no renderer, so no third image).

    For each pair (x', x) of one held-out identity, x is the exact target of transferring the
    appearance of x' into the pose of x: ``transfer`` is the (n,) MSE of D(mean pi(x), alpha(x'))
    against x, ``reconstruction`` the (n,) MSE of D(mean pi(x'), alpha(x')) against x'; pixels in
    [-1, 1]. Unlike triplets, the pose input shares the appearance, so leakage goes unpunished: use
    it beside the post-hoc MI, not alone. With ``quality``, ``ssim`` and ``psnr`` (dB) compare the
    same images as ``transfer`` (see :func:`image_quality`).
    """
    device = next(model.parameters()).device
    pairs = source.held_out_pairs(n, seed=seed, split=split)
    scores = defaultdict(list)
    for app, pose in zip(pairs["appearance_image"].split(batch_size),
                         pairs["pose_image"].split(batch_size)):
        app, pose = app.to(device), pose.to(device)
        _add_quality(scores, model.transfer(app, pose), pose, quality)
        scores["reconstruction"].append(
            (model.transfer(app, app) - app).square().flatten(1).mean(1).cpu())
    return {k: torch.cat(v) for k, v in scores.items()}


def summarize(errors: torch.Tensor) -> dict[str, float]:
    """Mean, median and standard deviation of per-item errors."""
    e = errors.double()
    return {"mean": e.mean().item(), "median": e.median().item(), "std": e.std().item()}

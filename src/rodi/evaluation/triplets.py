"""The paper's Sprites benchmark: transfer error on held-out triplets (ICCV 2019, Esser et al.,
section 4.1; METHOD.md section 6)."""

from __future__ import annotations

import torch

from rodi.models.networks import AppearancePoseModel


@torch.no_grad()
def triplet_errors(model: AppearancePoseModel, sheets, num_triplets: int = 8000,
                   seed: int = 0, batch_size: int = 250) -> dict[str, torch.Tensor]:
    """Per-triplet errors on held-out characters of a source with exact targets (``sprites``,
    ``mocap``), pixels in [-1, 1], posterior mean for pi.

    For each triplet: appearance input = character A in pose q, pose input = character B != A in
    pose p, target = A in pose p rendered from the sheets.

    Returns:
        ``transfer``: (num_triplets,) MSE between D(mean pi(pose input), alpha(appearance input))
        and the target; ``reconstruction``: (num_triplets,) MSE of D(mean pi(x), alpha(x)) against x
        for the appearance inputs x.
    """
    device = next(model.parameters()).device
    indices = sheets.triplet_indices(num_triplets, seed)
    transfer, reconstruction = [], []
    for chunk in indices.split(batch_size):
        t = {k: v.to(device) for k, v in sheets.triplets(chunk).items()}
        out = model.transfer(t["appearance_image"], t["pose_image"])
        transfer.append((out - t["target"]).square().flatten(1).mean(1).cpu())
        rec = model.transfer(t["appearance_image"], t["appearance_image"])
        reconstruction.append((rec - t["appearance_image"]).square().flatten(1).mean(1).cpu())
    return {"transfer": torch.cat(transfer), "reconstruction": torch.cat(reconstruction)}


@torch.no_grad()
def pair_errors(model: AppearancePoseModel, source, n: int = 8000, seed: int = 0,
                batch_size: int = 250) -> dict[str, torch.Tensor]:
    """Per-pair errors on held-out identities of user data (no renderer, so no third image).

    For each pair (x', x) of one held-out identity, x is the exact target of transferring the
    appearance of x' into the pose of x: ``transfer`` is the (n,) MSE of D(mean pi(x), alpha(x'))
    against x, ``reconstruction`` the (n,) MSE of D(mean pi(x'), alpha(x')) against x'; pixels in
    [-1, 1]. Unlike triplets, the pose input shares the appearance, so leakage goes unpunished: use
    it beside the post-hoc MI, not alone.
    """
    device = next(model.parameters()).device
    pairs = source.held_out_pairs(n, seed=seed)
    transfer, reconstruction = [], []
    for app, pose in zip(pairs["appearance_image"].split(batch_size), pairs["pose_image"].split(batch_size)):
        app, pose = app.to(device), pose.to(device)
        transfer.append((model.transfer(app, pose) - pose).square().flatten(1).mean(1).cpu())
        reconstruction.append((model.transfer(app, app) - app).square().flatten(1).mean(1).cpu())
    return {"transfer": torch.cat(transfer), "reconstruction": torch.cat(reconstruction)}


def summarize(errors: torch.Tensor) -> dict[str, float]:
    """Mean, median and standard deviation of per-item errors."""
    e = errors.double()
    return {"mean": e.mean().item(), "median": e.median().item(), "std": e.std().item()}

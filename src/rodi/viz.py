"""Pictures of a model: transfer matrices, interpolation grids, plots."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rodi.atomic import replacing


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) pixels in [-1, 1] -> (B, H, W, 3) uint8."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def transfer_grid(appearance: torch.Tensor, pose: torch.Tensor, transfers: torch.Tensor,
                  pad: int = 2) -> np.ndarray:
    """Lay out a transfer matrix as one (H', W', 3) uint8 picture.

    Row i + 1 starts with appearance input i, column j + 1 with pose input j, and cell (i, j) holds
    appearance i rendered in pose j: each row keeps its appearance, each column its pose.

    Args:
        appearance: (N, 3, H, W) appearance inputs in [-1, 1].
        pose: (M, 3, H, W) pose inputs in [-1, 1].
        transfers: (N, M, 3, H, W) in [-1, 1].
        pad: pixels of white between cells.
    """
    n, m = transfers.shape[:2]
    h, w = transfers.shape[-2:]
    canvas = np.full(((n + 1) * (h + pad) + pad, (m + 1) * (w + pad) + pad, 3), 255, np.uint8)

    def put(r: int, c: int, img: np.ndarray) -> None:
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y:y + h, x:x + w] = img

    for j, img in enumerate(to_uint8(pose)):
        put(0, j + 1, img)
    for i, img in enumerate(to_uint8(appearance)):
        put(i + 1, 0, img)
    cells = to_uint8(transfers.reshape(n * m, *transfers.shape[2:]))
    for k, img in enumerate(cells):
        put(k // m + 1, k % m + 1, img)
    return canvas


@torch.no_grad()
def transfer_matrix(model, appearance: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Every appearance in every pose with the posterior mean: (N, M, 3, H, W) in [-1, 1]."""
    n, m = len(appearance), len(pose)
    app = appearance.repeat_interleave(m, dim=0)
    pos = pose.repeat(n, 1, 1, 1)
    return model.transfer(app, pos).reshape(n, m, *appearance.shape[1:])


def interpolation_grid(appearance: torch.Tensor, pose: torch.Tensor, cells: torch.Tensor,
                       pad: int = 2) -> np.ndarray:
    """Lay out an interpolation figure as one (H', W', 3) uint8 picture, as :func:`transfer_grid`
    does: the first column shows ``appearance[0]`` beside the top row of renders and
    ``appearance[1]`` beside the bottom row, the first row ``pose[0]`` above the left column and
    ``pose[1]`` above the right column; headers between them are blank (white).

    Args:
        appearance: (2, 3, H, W) the appearance inputs in [-1, 1].
        pose: (2, 3, H, W) the pose inputs in [-1, 1].
        cells: (N, M, 3, H, W) renders in [-1, 1], N, M >= 2.
    """
    n, m = cells.shape[:2]
    white = torch.ones_like(appearance[:1])
    rows = torch.cat([appearance[:1], white.expand(n - 2, -1, -1, -1), appearance[1:]])
    columns = torch.cat([pose[:1], white.expand(m - 2, -1, -1, -1), pose[1:]])
    return transfer_grid(rows, columns, cells, pad)


def save_png(picture: np.ndarray, path: str | os.PathLike, scale: int = 1) -> Path:
    """Write an (H, W, 3) uint8 picture as a PNG atomically, each pixel as ``scale`` x ``scale``."""
    image = Image.fromarray(picture)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    with replacing(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def save_transfer_matrix(model, appearance: torch.Tensor, pose: torch.Tensor,
                         path: str | os.PathLike, scale: int = 1) -> Path:
    """Render and save a transfer matrix PNG (see :func:`transfer_grid`)."""
    device = next(model.parameters()).device
    grid = transfer_grid(appearance, pose,
                         transfer_matrix(model, appearance.to(device), pose.to(device)))
    return save_png(grid, path, scale)

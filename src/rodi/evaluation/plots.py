"""The evaluation's plots (matplotlib, drawn without pyplot's global state): the training curves of
gamma, lambda and the MI estimates, violins of per-triplet errors, transfer matrices side by
side."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from rodi.evaluation.metrics import metric


def _save(fig: Figure, path: str | os.PathLike, dpi: int) -> Path:
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


def plot_training_curves(scalars_csv: str | os.PathLike, path: str | os.PathLike,
                         epsilon: float | None = None) -> Path:
    """gamma and lambda (top) and I_T, I_T' in nats (bottom) over training steps, from a run's
    ``scalars.csv``: the picture of the smallest sufficient regularisation being found."""
    with open(scalars_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{scalars_csv} holds no logged steps")

    def col(key: str) -> list[float]:
        return [float(r[key]) for r in rows]

    steps = col("step")
    fig = Figure(figsize=(7, 6))
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(steps, col("gamma"), label="gamma (KL weight)")
    top.plot(steps, col("lambda"), label="lambda (Lagrange multiplier)")
    top.set_ylabel("weight")
    top.legend()
    bottom.plot(steps, col("mi"), label="I_T (attacked critic)", alpha=0.8)
    bottom.plot(steps, col("mi_independent"), label="I_T' (independent critic)", alpha=0.8)
    if epsilon is not None:
        bottom.axhline(epsilon, color="k", linestyle="--", linewidth=1,
                       label=f"epsilon = {epsilon}")
    # the first steps' estimates of untrained critics are far off; keep the scale of the rest
    settled = np.array([col("mi"), col("mi_independent")])[:, len(rows) // 20:]
    if settled.size:
        low, high = np.percentile(settled, [1, 99])
        pad = 0.1 * (high - low) + 0.05
        bottom.set_ylim(min(low, 0.0) - pad, max(high, epsilon or 0.0) + pad)
    bottom.set_ylabel("MI estimate (nats)")
    bottom.set_xlabel("training step")
    bottom.legend()
    return _save(fig, path, dpi=120)


def plot_violins(errors: dict[str, np.ndarray], path: str | os.PathLike) -> Path:
    """Violin plot of per-triplet MSE per variant (log scale), as the paper's figure shows it."""
    names = list(errors)
    fig = Figure(figsize=(1.6 * len(names) + 2, 4))
    ax = fig.subplots()
    data = [np.log10(np.clip(errors[k], 1e-6, None)) for k in names]
    ax.violinplot(data, showmedians=True)
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_ylabel(f"log10 {metric('triplet_mse').short} (pixels in [-1, 1])")
    return _save(fig, path, dpi=120)


def side_by_side(images: dict[str, str | os.PathLike], path: str | os.PathLike) -> Path:
    """Put transfer-matrix PNGs next to each other, each titled with its name."""
    fig = Figure(figsize=(4 * len(images), 4.4))
    axes = fig.subplots(1, len(images), squeeze=False)
    for ax, (name, file) in zip(axes[0], images.items()):
        ax.imshow(np.asarray(Image.open(file).convert("RGB")), interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    return _save(fig, path, dpi=150)

"""``rodi evaluate``: the benchmark numbers of one checkpoint, as JSON and as a printed table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from rodi.data.sprites import SpriteSheets
from rodi.evaluation.triplets import summarize, triplet_errors
from rodi.training.state import TrainState


def evaluate_checkpoint(checkpoint: str | os.PathLike, data_root: str | None = None,
                        num_triplets: int | None = None, device: torch.device | None = None) -> dict:
    """Triplet MSE (mean, median, std) and self-reconstruction MSE of a checkpoint, with its
    protocol, step and wall-clock training time (seconds).

    Raises:
        CheckpointError: the checkpoint cannot be read.
        SpritesDataError: the layer sheets cannot be found.
    """
    state = TrainState.from_checkpoint(checkpoint, device)
    cfg = state.cfg
    sheets = SpriteSheets(cfg.data.protocol, data_root if data_root is not None else cfg.data.root)
    n = num_triplets or cfg.data.num_triplets
    errors = triplet_errors(state.model, sheets, n, cfg.data.triplet_seed)
    return {
        "checkpoint": str(checkpoint),
        "protocol": cfg.data.protocol,
        "variant": cfg.objective.variant,
        "step": state.step,
        "train_seconds": round(state.train_seconds, 1),
        "num_triplets": n,
        "triplet_seed": cfg.data.triplet_seed,
        "triplet_mse": summarize(errors["transfer"]),
        "reconstruction_mse": summarize(errors["reconstruction"]),
        "gamma": state.objective.gamma.item(),
        "lambda": state.objective.multiplier.item(),
    }


def format_table(metrics: dict) -> str:
    """A plain-text table of :func:`evaluate_checkpoint`'s result."""
    t, r = metrics["triplet_mse"], metrics["reconstruction_mse"]
    rows = [
        ("protocol", metrics["protocol"]),
        ("variant", metrics["variant"]),
        ("step", str(metrics["step"])),
        ("training time", f"{metrics['train_seconds'] / 60:.1f} min"),
        (f"triplet MSE ({metrics['num_triplets']} triplets)",
         f"mean {t['mean']:.4f}  median {t['median']:.4f}  std {t['std']:.4f}"),
        ("self-reconstruction MSE", f"mean {r['mean']:.4f}  median {r['median']:.4f}  std {r['std']:.4f}"),
        ("gamma / lambda", f"{metrics['gamma']:.4g} / {metrics['lambda']:.4g}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def write_json(metrics: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path

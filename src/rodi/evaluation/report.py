"""``rodi evaluate``: the benchmark numbers of one checkpoint, as JSON and as a printed table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from rodi.data.sources import open_source
from rodi.evaluation.probes import (encode_codes, leakage_probes, pair_codes,
                                    posthoc_mutual_information, summarize_probes)
from rodi.evaluation.triplets import pair_errors, summarize, triplet_errors
from rodi.training.state import TrainState


def evaluate_state(state: TrainState, source, num_triplets: int | None = None
                   ) -> tuple[dict, dict[str, torch.Tensor]]:
    """Metrics of a trained state on a pair source and the per-item errors behind them.

    Sources with exact targets are scored on held-out triplets (``transfer_target: triplets``),
    user data on held-out same-identity pairs (``transfer_target: pairs``, see
    :func:`rodi.evaluation.triplets.pair_errors`); the key is ``triplet_mse`` in both cases.

    Returns:
        ``(metrics, errors)``: metrics as in :func:`evaluate_checkpoint`; errors with per-item
        ``transfer`` and ``reconstruction`` MSE, (num_triplets,) each.
    """
    cfg = state.cfg
    n = num_triplets or cfg.data.num_triplets
    exact = hasattr(source, "triplet_indices")
    errors = (triplet_errors if exact else pair_errors)(state.model, source, n, cfg.data.triplet_seed)
    metrics = {
        "source": cfg.data.source,
        "protocol": cfg.data.protocol if cfg.data.source == "sprites" else cfg.data.source,
        "transfer_target": "triplets" if exact else "pairs",
        "variant": cfg.objective.variant,
        "step": state.step,
        "train_seconds": round(state.train_seconds, 1),
        "num_triplets": n,
        "triplet_seed": cfg.data.triplet_seed,
        "triplet_mse": summarize(errors["transfer"]),
        "reconstruction_mse": summarize(errors["reconstruction"]),
        "gamma": state.objective.gamma.item(),
        "lambda": state.objective.multiplier.item(),
        "epsilon": cfg.objective.epsilon,
    }
    e = cfg.evaluation
    if e.probes:
        model = state.model
        if hasattr(source, "appearance_attributes"):
            train = encode_codes(model, source, "train", e.probe_train_codes, seed=11)
            test = encode_codes(model, source, "test", e.probe_test_codes, seed=12)
            layers = source.appearance_attributes
            detail = leakage_probes(train, test, layers, source.pose_attributes, steps=e.probe_steps)
            metrics["probes"] = summarize_probes(detail, layers, source.pose_attributes)
            metrics["probes_per_label"] = detail
        samples, means, appearances = pair_codes(model, source, "test", e.mi_pairs, seed=13)
        metrics["posthoc_mi_nats"] = posthoc_mutual_information(samples, appearances, steps=e.mi_steps)
        metrics["posthoc_mi_mean_nats"] = posthoc_mutual_information(means, appearances, steps=e.mi_steps)
    return metrics, errors


def evaluate_checkpoint(checkpoint: str | os.PathLike, data_root: str | None = None,
                        num_triplets: int | None = None, device: torch.device | None = None) -> dict:
    """Triplet MSE (mean, median, std; pixels in [-1, 1]) and self-reconstruction MSE of a
    checkpoint, with its protocol, step and wall-clock training time (seconds); unless the config's
    ``evaluation.probes`` is off, also the leakage probes' accuracies beside chance and a post-hoc MI
    estimate in nats.

    Raises:
        CheckpointError: the checkpoint cannot be read.
        SpritesDataError, MocapDataError, PairDataError: the data cannot be opened.
    """
    state = TrainState.from_checkpoint(checkpoint, device)
    cfg = state.cfg
    if data_root is not None:
        cfg.data.root = str(data_root)
    metrics, _ = evaluate_state(state, open_source(cfg.data, cfg.model.image_size), num_triplets)
    return {"checkpoint": str(checkpoint), **metrics}


def format_table(metrics: dict) -> str:
    """A plain-text table of :func:`evaluate_checkpoint`'s result."""
    t, r = metrics["triplet_mse"], metrics["reconstruction_mse"]
    rows = [
        ("protocol", metrics["protocol"]),
        ("variant", metrics["variant"]),
        ("step", str(metrics["step"])),
        ("training time", f"{metrics['train_seconds'] / 60:.1f} min"),
        (f"transfer MSE ({metrics['num_triplets']} held-out {metrics.get('transfer_target', 'triplets')})",
         f"mean {t['mean']:.4f}  median {t['median']:.4f}  std {t['std']:.4f}"),
        ("self-reconstruction MSE", f"mean {r['mean']:.4f}  median {r['median']:.4f}  std {r['std']:.4f}"),
        ("gamma / lambda", f"{metrics['gamma']:.4g} / {metrics['lambda']:.4g}"),
    ]
    if "probes" in metrics:
        p = metrics["probes"]
        for name, label in (("pose_to_appearance", "probe: pose sample -> appearance (leak)"),
                            ("pose_mean_to_appearance", "probe: pose mean -> appearance (leak)"),
                            ("appearance_to_pose", "probe: appearance code -> pose (leak)"),
                            ("appearance_to_appearance", "probe: appearance code -> appearance"),
                            ("pose_to_pose", "probe: pose sample -> pose"),
                            ("pose_mean_to_pose", "probe: pose mean -> pose")):
            rows.append((label, f"accuracy {p[name]:.3f}  (chance {p[name + '_chance']:.3f})"))
    if "posthoc_mi_nats" in metrics:
        rows.append(("post-hoc MI(pose sample; appearance)", f"{metrics['posthoc_mi_nats']:.3f} nats"))
        rows.append(("post-hoc MI(pose mean; appearance)", f"{metrics['posthoc_mi_mean_nats']:.3f} nats"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def write_json(metrics: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path

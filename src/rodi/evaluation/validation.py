"""The held-out score that picks a run's ``best.pt``: handed to :func:`rodi.training.loop.train` by
``rodi train``, ``rodi demo`` and ``rodi benchmark`` as ``validate=validation(cfg)`` (docs/method.md
section 8)."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from rodi.config import Config
from rodi.data.protocols import TripletSource
from rodi.evaluation.triplets import pair_errors, triplet_errors
from rodi.models.networks import AppearancePoseModel


def validation(cfg: Config) -> Callable[[AppearancePoseModel, object], Optional[float]]:
    """``validate(model, source)`` for :func:`rodi.training.loop.train`: :func:`validation_error` on
    ``train.validation_items`` items drawn with ``evaluation.validation_seed``."""
    n, seed = cfg.train.validation_items, cfg.evaluation.validation_seed
    return lambda model, source: validation_error(model, source, n, seed)


@torch.no_grad()
def validation_error(model: AppearancePoseModel, source, n: int, seed: int) -> float | None:
    """Mean transfer MSE (pixels in [-1, 1]) on ``n`` fixed triplets, or same-identity pairs for
    user data, of the ``validation`` split: training identities held out of training (and, for
    mocap, poses of training clips). The number ``best.pt`` is chosen by; it never looks at test
    data. None where the data has too few identities for a validation split (then no ``best.pt``
    is written, only ``last.pt``)."""
    exact = isinstance(source, TripletSource)
    if len(source.split("validation")) < (2 if exact else 1):
        return None
    score = triplet_errors if exact else pair_errors
    return score(model, source, n, seed, quality=False,
                 split="validation")["transfer"].mean().item()

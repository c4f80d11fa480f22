"""``rodi data inspect``: what a pair source holds and a contact sheet of the pairs the model
sees."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rodi.data.folders import SPLITS
from rodi.data.protocols import PairSource


def inspect_source(source: PairSource, out_png: str | os.PathLike, pairs: int = 8, seed: int = 0,
                   split: str = "train") -> dict:
    """Write a contact sheet of training pairs and return the source's summary.

    Works for any source with ``sample_pairs`` and ``split`` (any
    :class:`~rodi.data.protocols.PairSource`, user data or rendered).
    The PNG has one row per pair, the appearance image left and the pose image right, on a grey
    grid with 2-pixel gaps: ``2 S + 6`` pixels wide and ``pairs * (S + 2) + 2`` high.

    Returns:
        ``source.summary()`` where the source has one, else the identities per split.
    """
    batch = source.sample_pairs(pairs, torch.Generator().manual_seed(seed), split=split)
    images = torch.stack([batch["appearance_image"], batch["pose_image"]], dim=1)
    images = (((images + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
              .permute(0, 1, 3, 4, 2).numpy())
    s, gap = images.shape[2], 2
    sheet = np.full((pairs * (s + gap) + gap, 2 * s + 3 * gap, 3), 128, dtype=np.uint8)
    for i in range(pairs):
        for j in range(2):
            y, x = gap + i * (s + gap), gap + j * (s + gap)
            sheet[y:y + s, x:x + s] = images[i, j]
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(out_png)
    summary = getattr(source, "summary", None)
    if callable(summary):
        return summary()
    return {"identities": {name: len(source.split(name)) for name in SPLITS}}

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


def contact_sheet(rows: list, gap: int = 2, grey: int = 128) -> np.ndarray:
    """Lay out rows of equal square images on a grey grid with ``gap``-pixel gaps: one (H, W, 3)
    uint8 picture, ``C (S + gap) + gap`` wide and ``R (S + gap) + gap`` high for R rows of at most
    C images of S x S pixels. Rows may be shorter than the longest; their missing cells stay grey.

    Args:
        rows: R sequences of (S, S, 3) uint8 images (an (R, C, S, S, 3) array is one).
    """
    s = next(len(image) for row in rows for image in row)
    columns = max(len(row) for row in rows)
    sheet = np.full((len(rows) * (s + gap) + gap, columns * (s + gap) + gap, 3), grey,
                    dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            y, x = gap + i * (s + gap), gap + j * (s + gap)
            sheet[y:y + s, x:x + s] = image
    return sheet


def inspect_source(source: PairSource, out_png: str | os.PathLike, pairs: int = 8, seed: int = 0,
                   split: str = "train") -> dict:
    """Write a contact sheet of training pairs and return the source's summary.

    Works for any source with ``sample_pairs`` and ``split`` (any
    :class:`~rodi.data.protocols.PairSource`, user data or rendered).
    The PNG has one row per pair, the appearance image left and the pose image right, on a grey
    grid with 2-pixel gaps (:func:`contact_sheet`): ``2 S + 6`` pixels wide and
    ``pairs * (S + 2) + 2`` high.

    Returns:
        ``source.summary()`` where the source has one, else the identities per split.
    """
    batch = source.sample_pairs(pairs, torch.Generator().manual_seed(seed), split=split)
    images = torch.stack([batch["appearance_image"], batch["pose_image"]], dim=1)
    images = (((images + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
              .permute(0, 1, 3, 4, 2).numpy())
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(contact_sheet(list(images))).save(out_png)
    summary = getattr(source, "summary", None)
    if callable(summary):
        return summary()
    return {"identities": {name: len(source.split(name)) for name in SPLITS}}

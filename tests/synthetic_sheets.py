"""Synthetic stand-ins for the LPC layer sheets, drawn procedurally, for clones without the real
art.

Every sheet has the size, cell grid, folders and file names :func:`rodi.data.sprites.locate_sheets`
and :class:`rodi.data.sprites.SpriteSheets` expect (taken from the loader's own constants), and,
like the real ones, is a palette PNG whose index 0 is transparent. Only the cells the loader can
read (the rows of ``SHEET_ROWS``, as many columns as that action has frames) are drawn; the rest
stay transparent. Each layer draws its own part of a blocky figure:

- the colour of every part is set by the layer choice (a different hue per choice), and some shapes
  too (hair length, sleeve length, trouser length, body width), so different characters render
  differently;
- the figure's place is set by the direction, its bob, stride and the length of one arm by the
  frame, and the arm's height by the action, so different poses render differently.

Hair is opaque over the top of the head, so some pixels show hair over body, as in the real sheets.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image

from rodi.data.sprites import CELL, LAYER_CHOICES, LAYER_ORDER, SHEET_ROWS, SHEET_SIZE

DIRECTION_SHIFT = {"back": 0, "left": -4, "front": 0, "right": 4}  # figure's x offset per direction


def layer_colour(layer: str, choice: int) -> tuple[int, int, int]:
    """The colour of ``layer``'s sheet ``choice``: hues spread over the choices, offset per
    layer."""
    hue = (LAYER_ORDER.index(layer) / len(LAYER_ORDER) + choice / LAYER_CHOICES[layer]) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.55 + 0.4 * (choice % 2))
    return round(255 * r), round(255 * g), round(255 * b)


def _fill(cell: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    """Set the half-open box [x0, x1) x [y0, y1) of one cell to palette index 1, clipped to the
    cell."""
    cell[max(y0, 0):min(y1, CELL), max(x0, 0):min(x1, CELL)] = 1


def draw_cell(cell: np.ndarray, layer: str, choice: int, action: int, direction: str,
              frame: int) -> None:
    """Draw ``layer``'s part of the figure for sheet ``choice`` into one (64, 64) index cell, in the
    pose ``frame`` of action number ``action`` (its position in ``SHEET_ROWS``) seen from
    ``direction``."""
    cx = CELL // 2 + DIRECTION_SHIFT[direction]
    bob = (0, 1, 2, 1)[frame % 4]
    stride = frame % 3 - 1
    top = 10 + bob  # top of the head
    if layer == "body":
        half = 5 + choice % 3  # torso half-width
        _fill(cell, cx - 6, top, cx + 6, top + 12)  # head
        _fill(cell, cx - half, top + 12, cx + half, top + 30)  # torso
        _fill(cell, cx - 6 + stride, top + 30, cx - 1 + stride, 56)  # legs, apart by the stride
        _fill(cell, cx + 1 - stride, top + 30, cx + 6 - stride, 56)
        # the arm: its height the action, length the frame; it reaches past the widest topwear, so
        # its tip always shows
        arm_y, arm = top + 14 + 2 * action, 6 + frame
        if direction == "left":
            _fill(cell, cx - half - arm, arm_y, cx - half, arm_y + 3)
        else:
            _fill(cell, cx + half, arm_y, cx + half + arm, arm_y + 3)
    elif layer == "eyes":
        if direction in ("front", "left"):
            _fill(cell, cx - 3 - choice % 2, top + 5, cx - 1, top + 7)
        if direction in ("front", "right"):
            _fill(cell, cx + 1, top + 5, cx + 3 + choice % 2, top + 7)
    elif layer == "shoes":
        _fill(cell, cx - 7 + stride, 56, cx - 1 + stride, 58 + choice)
        _fill(cell, cx + 1 - stride, 56, cx + 7 - stride, 58 + choice)
    elif layer == "bottomwear":
        _fill(cell, cx - 7, top + 28, cx + 7, top + 31)  # belt line
        end = top + 33 + 2 * choice  # trouser length by choice
        _fill(cell, cx - 7 + stride, top + 30, cx - 1 + stride, end)
        _fill(cell, cx + 1 - stride, top + 30, cx + 7 - stride, end)
    elif layer == "topwear":
        half, sleeve = 6 + choice % 2, choice // 2  # sleeves shorter than the shortest arm
        _fill(cell, cx - half - sleeve, top + 12, cx + half + sleeve, top + 14 + 2 * (choice % 4))
        _fill(cell, cx - half, top + 12, cx + half, top + 26)
    elif layer == "hair":
        _fill(cell, cx - 7, top - 2, cx + 7, top + 3)  # crown, opaque over the head
        _fill(cell, cx - 7, top + 3, cx - 4, top + 3 + choice)  # sides, as long as the choice
        _fill(cell, cx + 4, top + 3, cx + 7, top + 3 + choice)
        if direction == "back":
            _fill(cell, cx - 6, top, cx + 6, top + 12)  # seen from behind, hair covers the head
    else:
        raise ValueError(f"no drawing for layer {layer!r}")


def draw_sheet(layer: str, choice: int) -> Image.Image:
    """One layer sheet: a palette image of ``SHEET_SIZE``, index 0 transparent, index 1 the
    choice's colour."""
    width, height = SHEET_SIZE
    index = np.zeros((height, width), np.uint8)
    for action, (_, first_row, n_frames, directions) in enumerate(SHEET_ROWS):
        for i, direction in enumerate(directions):
            row = first_row + i
            for frame in range(n_frames):
                cell = index[row * CELL:(row + 1) * CELL, frame * CELL:(frame + 1) * CELL]
                draw_cell(cell, layer, choice, action, direction, frame)
    image = Image.fromarray(index, "P")
    image.putpalette([0, 0, 0, *layer_colour(layer, choice)])
    image.info["transparency"] = 0
    return image


def write_synthetic_sheets(root: Path) -> Path:
    """Write every layer sheet the loader reads (``<layer>/<choice>.png`` for each layer and choice)
    under ``root`` and return ``root``."""
    for layer in LAYER_ORDER:
        (root / layer).mkdir(parents=True, exist_ok=True)
        for choice in range(LAYER_CHOICES[layer]):
            draw_sheet(layer, choice).save(root / layer / f"{choice}.png", transparency=0,
                                           compress_level=1)
    (root / "SOURCE.md").write_text(
        "Synthetic layer sheets drawn by tests/synthetic_sheets.py: the LPC layout, "
        "none of the LPC art.\n"
    )
    return root

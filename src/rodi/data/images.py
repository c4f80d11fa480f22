"""Reading user images for transfer: any file Pillow reads, made to look like training data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ImageReadError(ValueError):
    """An image file is missing, unreadable or not an image."""


def load_image(path: str | os.PathLike, size: int, background: tuple[int, int, int] = (0, 0, 0)) -> torch.Tensor:
    """Read an image as the model sees it: (3, size, size) float32 in [-1, 1].

    EXIF orientation is applied; transparency (RGBA, LA, palette) is composited onto ``background``
    (the training background: black for Sprites); grayscale is expanded to RGB; the image is padded
    with ``background`` to a square (nothing is cropped) and resized to ``size``.

    Raises:
        ImageReadError: naming the file, when it is missing or cannot be decoded.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: not a readable image ({err})") from None
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background + (255,))
        im = Image.alpha_composite(canvas, rgba)
    im = im.convert("RGB")
    if im.size != (size, size):
        im = ImageOps.pad(im, (size, size), method=Image.Resampling.LANCZOS, color=background)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32).copy()).permute(2, 0, 1)
    return x / 127.5 - 1.0


def expand_image_paths(items: list[str]) -> list[Path]:
    """Files as given, folders replaced by their image files in sorted order.

    Raises:
        ImageReadError: a path does not exist, or a folder holds no images.
    """
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not found:
                raise ImageReadError(f"{p}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            paths += found
        elif p.exists():
            paths.append(p)
        else:
            raise ImageReadError(f"{p}: no such file or folder")
    return paths

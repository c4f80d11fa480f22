"""Reading user images: any file Pillow reads, made to look like training data.

Training sources and ``rodi transfer`` share these steps, so an image is prepared the same way
whether the model learns from it or is asked to transfer it.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from rodi.data.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
FITS = ("pad", "crop")

# Errors Pillow raises for files that are not images or are damaged; anything else is a bug.
_DECODE_ERRORS = (
    UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error,
    Image.DecompressionBombError,
)


class MediaReadError(DataError):
    """A media file (image or video) that cannot be used; the message names it and says why.
    A :class:`~rodi.data.errors.DataError`, and so a ``ValueError`` as before.

    Attributes:
        path: the file.
        reason: what is wrong with it, without the path.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(path, reason)
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class ImageReadError(MediaReadError):
    """An image file is missing, unreadable or not an image."""


def open_image(path: str | os.PathLike, size: int | None = None) -> Image.Image:
    """Decode an image file with its EXIF orientation applied.

    Args:
        size: the square side it will be resized to, or None; JPEGs are then decoded at a reduced
            scale that stays at least twice ``size`` (as ``Image.thumbnail`` does), which is much
            faster for photographs and leaves the final resize to a good filter.

    Raises:
        ImageReadError: the file is missing or cannot be decoded.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            if size is not None:
                im.draft(None, (2 * size, 2 * size))
            im = ImageOps.exif_transpose(im)
            im.load()
            return im
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except _DECODE_ERRORS as err:
        raise ImageReadError(path, f"not a readable image ({type(err).__name__}: {err})") from None


def to_rgb(im: Image.Image, background: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """The image in 8-bit RGB: transparency composited onto ``background``, 16-bit gray scaled to
    8 bits, grayscale, palette and CMYK converted.

    Raises:
        ValueError: a mode Pillow cannot convert to RGB.
    """
    if im.mode.startswith("I;16") or im.mode == "I":
        # Pillow's own conversion clips 16-bit values at 255 instead of scaling them.
        gray = np.asarray(im, dtype=np.float64) / 257.0
        im = Image.fromarray(np.clip(np.rint(gray), 0, 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        im = Image.alpha_composite(canvas, rgba)
    return im.convert("RGB")


def square_array(im: Image.Image, size: int, background: tuple[int, int, int] = (0, 0, 0),
                 fit: str = "pad") -> np.ndarray:
    """An RGB image made square and resized: (size, size, 3) uint8.

    ``fit="pad"`` pads the shorter side with ``background`` (nothing is cropped); ``fit="crop"``
    keeps the centred square. Resizing uses Lanczos filtering.
    """
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}; use one of {', '.join(FITS)}")
    if im.size != (size, size):
        method = Image.Resampling.LANCZOS
        if fit == "pad":
            im = ImageOps.pad(im, (size, size), method=method, color=tuple(background))
        else:
            im = ImageOps.fit(im, (size, size), method=method)
    return np.asarray(im, dtype=np.uint8)


def prepare_image(path: str | os.PathLike, size: int, background: tuple[int, int, int] = (0, 0, 0),
                  fit: str = "pad") -> np.ndarray:
    """Read a file as training data is stored: (size, size, 3) uint8 RGB.

    Raises:
        ImageReadError: naming the file, when it is missing, cannot be decoded or converted.
    """
    im = open_image(path, size)
    try:
        im = to_rgb(im, background)
    except _DECODE_ERRORS as err:
        raise ImageReadError(path, f"cannot convert mode {im.mode} to RGB ({err})") from None
    return square_array(im, size, background, fit)


def load_image(path: str | os.PathLike, size: int, background: tuple[int, int, int] = (0, 0, 0),
               fit: str = "pad") -> torch.Tensor:
    """Read an image as the model sees it: (3, size, size) float32 in [-1, 1].

    EXIF orientation is applied; transparency (RGBA, LA, palette) is composited onto ``background``
    (the training background: black for Sprites); grayscale, palette, CMYK and 16-bit images are
    converted to RGB; the image is padded with ``background`` to a square (nothing is cropped) or,
    with ``fit="crop"``, centre-cropped, and resized to ``size``.

    Raises:
        ImageReadError: naming the file, when it is missing or cannot be decoded.
    """
    return to_tensor(prepare_image(path, size, background, fit))


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 RGB as the model's input: (..., 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.array(pixels, dtype=np.uint8)).movedim(-1, -3).float() / 127.5 - 1.0


def expand_image_paths(items: list[str]) -> list[Path]:
    """Files as given, folders replaced by their image files in sorted order.

    Raises:
        ImageReadError: a path does not exist, or a folder holds no images.
    """
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir()
                           if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not found:
                raise ImageReadError(p, f"folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            paths += found
        elif p.exists():
            paths.append(p)
        else:
            raise ImageReadError(p, "no such file or folder")
    return paths

"""One entry point from a config's ``data`` section to a source of image pairs.

Every source offers ``image_size``, ``sample_pairs(batch_size, generator, split)`` and
``fixed_examples(n, split, seed)``. Sources with exact targets (``sprites``, ``mocap``, ``flare``) also offer
``triplet_indices``/``triplets`` and labelled renders (``render``, ``labels``, ``split``,
``appearance_attributes``, ``pose_attributes``); user data (``folder``, ``videos``, ``index``)
offers ``held_out_pairs`` instead: two images of one held-out identity, the second the exact target
of transferring the first's appearance into its pose.
"""

from __future__ import annotations

from pathlib import Path

from rodi.config import DataConfig


class DataError(ValueError):
    """Data cannot be opened: the base of every source's error."""


def data_errors() -> tuple[type[Exception], ...]:
    """The exception types a source raises for bad data (for one-line CLI messages)."""
    from rodi.data.flare import FlareDataError
    from rodi.data.folders import PairDataError
    from rodi.data.mocap import MocapDataError
    from rodi.data.sprites import SpritesDataError

    return DataError, PairDataError, MocapDataError, SpritesDataError, FlareDataError


def guess_source(path: str | Path) -> str:
    """``sprites`` for a folder of LPC layer sheets, else ``index`` for a CSV file, ``videos`` for a
    folder of mostly videos, ``folder`` for a folder of identities.

    Raises:
        PairDataError: the path is missing, a file other than a CSV, or a folder without media.
    """
    from rodi.data.folders import guess_kind
    from rodi.data.sprites import _looks_like_root

    p = Path(path).expanduser()
    if p.is_dir() and _looks_like_root(p):
        return "sprites"
    kind = guess_kind(p)
    return "folder" if kind == "identities" else kind


def open_source(data: DataConfig, image_size: int = 64, progress: bool = True):
    """The pair source a config's ``data`` section describes.

    Raises:
        SpritesDataError, MocapDataError, FlareDataError, PairDataError: the data is missing or unusable.
    """
    if data.source == "sprites":
        from rodi.data.sprites import SpriteSheets

        return SpriteSheets(data.protocol, data.root)
    if data.source == "flare":
        from rodi.data.flare import FlareHeroes

        return FlareHeroes(image_size, data.root, data.cache_dir, progress)
    if data.source == "mocap":
        from rodi.data.mocap import MocapHumanoid

        return MocapHumanoid(image_size, data.frame_stride or 3, data.yaws, data.cache_dir, progress)
    from rodi.data.folders import open_pair_source

    return open_pair_source(
        data.root, kind="identities" if data.source == "folder" else data.source, image_size=image_size, fit=data.fit,
        background=tuple(int(v) for v in data.background), flip=data.flip,
        validation_fraction=data.validation_fraction, split_seed=data.split_seed,
        frame_stride=data.frame_stride or 1,
        time_window=tuple(data.time_window) if data.time_window else None,
        cache_dir=data.cache_dir, progress=progress,
    )

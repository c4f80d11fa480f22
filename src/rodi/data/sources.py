"""One entry point from a config's ``data`` section to a source of image pairs.

What a source offers is written down as protocols in :mod:`rodi.data.protocols`: every source is a
:class:`~rodi.data.protocols.PairSource`; user data (``folder``, ``videos``, ``index``) is also a
:class:`~rodi.data.protocols.HeldOutPairSource`; the rendered sources (``sprites``, ``mocap``,
``flare``) are :class:`~rodi.data.protocols.TripletSource` and
:class:`~rodi.data.protocols.LabelledSource`, and ``mocap`` a
:class:`~rodi.data.protocols.KeypointSource`. Every error a source raises for bad data is a
:class:`DataError` (from :mod:`rodi.data.errors`, re-exported here).
"""

from __future__ import annotations

from pathlib import Path

from rodi.config import DataConfig
from rodi.data.errors import DataError
from rodi.data.flare import FlareHeroes
from rodi.data.folders import guess_kind, open_pair_source
from rodi.data.mocap import MocapHumanoid
from rodi.data.protocols import PairSource
from rodi.data.sprites import SpriteSheets, _looks_like_root

__all__ = ["DataError", "guess_source", "open_source"]


def guess_source(path: str | Path) -> str:
    """``sprites`` for a folder of LPC layer sheets, else ``index`` for a CSV file, ``videos`` for a
    folder of mostly videos, ``folder`` for a folder of identities.

    Raises:
        PairDataError: the path is missing, a file other than a CSV, or a folder without media.
    """
    p = Path(path).expanduser()
    if p.is_dir() and _looks_like_root(p):
        return "sprites"
    kind = guess_kind(p)
    return "folder" if kind == "identities" else kind


def open_source(data: DataConfig, image_size: int = 64, progress: bool = True) -> PairSource:
    """The pair source a config's ``data`` section describes.

    Raises:
        DataError: the data is missing or unusable (a ``SpritesDataError``, ``MocapDataError``,
            ``FlareDataError`` or ``PairDataError``).
    """
    if data.source == "sprites":
        return SpriteSheets(data.protocol, data.root)
    if data.source == "flare":
        return FlareHeroes(image_size, data.root, data.cache_dir, progress)
    if data.source == "mocap":
        return MocapHumanoid(image_size, data.frame_stride or 3, data.yaws, data.cache_dir,
                             progress)
    return open_pair_source(
        data.root, kind="identities" if data.source == "folder" else data.source,
        image_size=image_size, fit=data.fit,
        background=tuple(int(v) for v in data.background), flip=data.flip,
        validation_fraction=data.validation_fraction, split_seed=data.split_seed,
        frame_stride=data.frame_stride or 1,
        time_window=tuple(data.time_window) if data.time_window else None,
        cache_dir=data.cache_dir, progress=progress,
    )

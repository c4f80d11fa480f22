"""Where rodi keeps what it downloads or prepares: one folder of the user cache.

This module imports nothing from rodi, so any module can use it without an import cycle.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs

APP_NAME = "rodi"


def user_cache(*parts: str) -> Path:
    """rodi's folder of the user cache, joined with ``parts``: ``$XDG_CACHE_HOME/rodi/PARTS...``
    (``~/.cache/rodi/...`` where it is not set) on Linux, the OS equivalent elsewhere (from
    :func:`platformdirs.user_cache_dir`, read at every call, so a changed ``XDG_CACHE_HOME``
    counts).

    The folders in use: ``lpc-sprites`` (downloaded Sprites sheets), ``mocap`` (mocap renders),
    ``flare`` (the Flare data and its resampled layers), ``pairs`` (prepared images of user data)
    and ``judges`` (trained judges). Nothing is created here.
    """
    return Path(platformdirs.user_cache_dir(APP_NAME)).joinpath(*parts)

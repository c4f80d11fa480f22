"""The base class of every error that data raises, in a module of its own so that every source
(and the image and video readers under them) can import it without an import cycle."""

from __future__ import annotations


class DataError(ValueError):
    """Data cannot be opened or used: the base of every source's error (``SpritesDataError``,
    ``MocapDataError``, ``FlareDataError``, ``PairDataError``) and of the media readers' errors
    (``MediaReadError`` and its subclasses). ``except DataError`` gives one-line messages for all.

    Each subclass keeps the built-in base it had before (``RuntimeError`` or ``ValueError``) beside
    this one, so ``except`` clauses written for those still catch it.
    """

"""rodi: unsupervised, robust disentangling of appearance and pose from image pairs
(after Esser, Haux & Ommer, ICCV 2019).

``rodi.load(name_or_path)`` gives a :class:`rodi.inference.Model` (transfer, encode_pose,
encode_appearance, decode, interpolate, retarget); see :mod:`rodi.inference`. Importing ``rodi``
itself stays light: torch is imported on first use of those names.
"""

from rodi.version import __version__

__all__ = ["Model", "load", "__version__"]


def __getattr__(name: str):
    if name in ("Model", "load"):
        # deferred: `import rodi` and `rodi --help` stay light (no torch)
        from rodi import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'rodi' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

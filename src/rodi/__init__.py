"""rodi: unsupervised, robust disentangling of appearance and pose from image pairs
(after Esser, Haux & Ommer, ICCV 2019)."""

__version__ = "0.1.0"

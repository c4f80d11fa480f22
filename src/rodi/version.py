"""rodi's version: the package's (pyproject.toml reads it from here) and the one written into
checkpoints and exports."""

__version__ = "0.1.0"

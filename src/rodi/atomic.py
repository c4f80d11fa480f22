"""Writing files so that a reader sees the old file or the complete new one, never a partial one."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

# mkstemp creates files readable by their owner only; a finished output should have the permissions
# any other new file gets. The umask can only be read by setting it, so it is read once, at import,
# before any thread of ours could create a file meanwhile.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
NEW_FILE_MODE = 0o666 & ~_UMASK  # what a plainly created file gets


@contextmanager
def replacing(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (``.NAME.XXXXXXXX.tmp``, in ``path``'s folder, which
    is created) for the caller to write; rename it over ``path`` when the block ends, or remove it
    when the block raises.

    Args:
        durable: fsync the file before the rename and the folder after it, so that the new file
            survives a power cut, not only a crash of the process.

    The temporary name hides the format from writers that guess it from the suffix: give them the
    format explicitly.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, NEW_FILE_MODE)
        yield Path(tmp)
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync(path.parent)


@contextmanager
def new_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` (``.NAME.XXXXXXXX.tmp``) for the caller to fill;
    rename it to ``path`` when the block ends, or remove it with all it holds when the block
    raises, so that ``path`` is either absent or complete.

    Raises:
        FileExistsError: ``path`` exists and is not an empty folder (checked before the block runs
            and again at the rename; nothing is overwritten).
    """
    path = Path(path)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise FileExistsError(errno.EEXIST, "already exists; choose a new folder", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)
        yield tmp
        try:
            os.rename(tmp, path)  # onto a missing or empty folder only: never replaces data
        except OSError as err:
            if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise FileExistsError(errno.EEXIST, "already exists; choose a new folder",
                                      str(path)) from None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def link(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Make ``target`` name the same file as ``source`` (a hard link, or a copy where the file
    system has none), replacing ``target`` atomically: a reader sees the old file or ``source``."""
    with replacing(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
    return Path(target)


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Write ``tensors`` (name -> contiguous CPU tensor) and string ``metadata`` as a safetensors
    file, atomically (see :func:`replacing`) and with a plain new file's permissions.

    Raises:
        OSError: the file cannot be written (nothing is left at ``path`` then).
    """
    with replacing(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
        # safetensors replaces the file it writes with an owner-only one
        os.chmod(tmp, NEW_FILE_MODE)
    return Path(path)


def read_safetensors(path: str | os.PathLike,
                     error: type[Exception]) -> tuple[dict[str, str], dict]:
    """The metadata and tensors (on the CPU) of a safetensors file; reading one never runs code.

    Raises:
        error: ``path`` is missing or not a readable safetensors file (one line naming it).
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise error(f"{path} is not a readable safetensors file ({err})") from None

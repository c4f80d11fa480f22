"""Pair sources from your own data: a folder of identities, a folder of videos, or an index file.

rodi learns from pairs of images that share an appearance. Three layouts give such pairs:

:class:`IdentityFolder`
    ``ROOT/<identity>/<images>`` (images may sit in subfolders of the identity folder); a pair is
    two different images of one identity (two photos of one person, two views of one object).
:class:`VideoFolder`
    A folder (searched recursively) of videos; each video is one identity and a pair is two
    different frames of it.
:class:`IndexFile`
    A CSV file with the columns ``identity,path`` and optionally ``split`` (``train``,
    ``validation`` / ``val``, or ``test``); relative paths are read from the CSV's folder.

All three prepare every image once (orientation, transparency, colour, square fit, resize; see
:func:`rodi.data.images.prepare_image`) into a uint8 array on disk that is memory-mapped, never
loaded whole: decoding photographs at every step would be far slower than the model. The cache
is keyed by the listed files (path, size, modification time) and every preprocessing setting, so
a changed folder is prepared again.

Identities are split three ways (see :meth:`PairImages.split`): ``test`` (held out for reported
transfer errors and pictures), ``validation`` (held out of the remaining identities, used only to
choose ``best.pt``, so model selection never looks at test data) and ``train`` (the rest). Files
that cannot be used are skipped and named in a warning and in :meth:`PairImages.summary`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from rodi.atomic import replacing
from rodi.cache import user_cache
from rodi.data.errors import DataError
from rodi.data.images import FITS, IMAGE_SUFFIXES, ImageReadError, prepare_image
from rodi.data.video import VIDEO_SUFFIXES, VideoReadError, probe_video, video_frames

KINDS = ("identities", "videos", "index")
SPLITS = ("train", "validation", "test")
# Values of an index file's ``split`` column (any case) and the split each means.
SPLIT_NAMES = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
CACHE_VERSION = 1
_EXAMPLES_IN_WARNINGS = 3


class PairDataError(DataError):
    """The data cannot give training pairs: missing, empty, unreadable or too few identities."""


class PairDataWarning(UserWarning):
    """Some files or identities were left out; the data is still usable."""


class _Unreadable(Exception):
    """A file gave no (more) images; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Unit:
    """One listed file: an image, or a video giving many frames."""

    identity: str
    path: Path
    resolved: str
    size: int
    mtime_ns: int


class PairImages:
    """Images grouped by identity, prepared once into a memory-mapped uint8 array, sampled in pairs.

    Subclasses say which files there are (:meth:`_list`) and how a file becomes images
    (:meth:`_frames`); everything else (cache, split, sampling, reports) is shared.

    Args:
        root: the folder or index file.
        image_size: side of the square images the model sees.
        fit: ``pad`` (pad to a square with ``background``, nothing cropped) or ``crop`` (keep the
            centred square).
        background: RGB (0-255) behind transparent pixels and in the padding.
        flip: flip each image of a training pair left-right with probability 1/2, independently.
        validation_fraction: share of identities held out as the ``test`` split (at least one when
            above zero), and then the share of the other identities held out of training as the
            ``validation`` split (see :meth:`_validation_mask` for the exact count; none with fewer
            than 3 non-test identities). Zero holds out nothing.
        split_seed: which identities are held out; the same seed and names give the same splits
            on any machine and in any listing order.
        cache_dir: folder of prepared arrays; default the user cache's ``pairs`` folder (see
            :func:`rodi.cache.user_cache`).
        progress: show a progress bar while preparing.

    Attributes:
        image_size: S.
        identities: names of the usable identities (two or more usable images), sorted.
        images_per_identity: (K,) long, usable images of each identity.
        fingerprint: sha256 (hex) of the listed files (path, size, modification time) and every
            preprocessing setting: the key of the prepared array, which changes whenever the
            images would (what caches of things learnt from this data are keyed by).

    Raises:
        PairDataError: the root is missing, nothing in it is usable, or fewer than two identities
            (overall or in the ``train`` split) have two usable images.
    """

    kind = ""
    file_kind = "image"  # in messages about files
    item = "image"  # in messages about what an identity has two of

    def __init__(self, root: str | os.PathLike, *, image_size: int = 64, fit: str = "pad",
                 background: tuple[int, int, int] = (0, 0, 0), flip: bool = False,
                 validation_fraction: float = 0.1, split_seed: int = 0,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True):
        if int(image_size) < 1:
            raise PairDataError(f"image_size must be a positive number of pixels, got {image_size}")
        if fit not in FITS:
            raise PairDataError(f"unknown fit {fit!r}; use one of {', '.join(FITS)}")
        background = tuple(int(c) for c in background)
        if len(background) != 3 or not all(0 <= c <= 255 for c in background):
            raise PairDataError("background must be three values in 0..255 (RGB), "
                                f"got {background}")
        if not 0.0 <= validation_fraction < 1.0:
            raise PairDataError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
        self.root = Path(root).expanduser()
        self.image_size = int(image_size)
        self.fit = fit
        self.background = background
        self.flip = bool(flip)
        self.validation_fraction = float(validation_fraction)
        self.split_seed = int(split_seed)
        self.cache_dir = (Path(cache_dir).expanduser() if cache_dir is not None
                          else user_cache("pairs"))
        self.progress = progress
        if not self.root.exists():
            raise PairDataError(f"{self.root}: no such file or folder")
        self._skipped: list[tuple[str, str]] = []
        units = self._stat_and_dedupe(self._list())
        if not units:
            raise PairDataError(self._nothing_usable(f"found no {self.file_kind} files"))
        self._cache_file, counts, read_problems = self._prepare(units)
        self._skipped += read_problems["skipped"]
        self._partly_read = read_problems["partly_read"]
        self._data = np.load(self._cache_file, mmap_mode="r")
        self._index(units, counts)

    # -- what subclasses provide -----------------------------------------------------------------

    def _list(self) -> list[tuple[str, Path]]:
        """(identity, file) for every candidate file; problems go to ``self._skipped``."""
        raise NotImplementedError

    def _reserve(self, path: Path) -> int:
        """How many rows the file may fill (an upper bound); raises :class:`_Unreadable`."""
        return 1

    def _frames(self, path: Path) -> Iterator[np.ndarray]:
        """The file's images, (S, S, 3) uint8 each; raises :class:`_Unreadable` when it stops."""
        try:
            yield prepare_image(path, self.image_size, self.background, self.fit)
        except ImageReadError as err:
            raise _Unreadable(err.reason) from None

    def _settings(self) -> dict:
        """Every setting that changes the prepared pixels."""
        return {"image_size": self.image_size, "fit": self.fit, "background": list(self.background)}

    def _test_mask(self, names: list[str]) -> np.ndarray:
        """(K,) bool, True for the ``test`` split: the ``validation_fraction`` of names that come
        first in an order hashed from ``split_seed``. Ranking by a hash of each name makes the split
        independent of listing order, and adding or removing identities moves few others."""
        k = len(names)
        n_test = (0 if self.validation_fraction == 0
                  else min(max(1, round(k * self.validation_fraction)), k - 1))
        rank = sorted(range(k), key=lambda i: hashlib.sha256(f"{self.split_seed}/{names[i]}".encode(
            "utf-8", "surrogatepass")).hexdigest())
        mask = np.zeros(k, dtype=bool)
        mask[rank[:n_test]] = True
        return mask

    def _validation_mask(self, names: list[str], test: np.ndarray) -> np.ndarray:
        """(K,) bool, True for the ``validation`` split, chosen among the identities outside
        ``test`` (the (K,) bool of :meth:`_test_mask`), so the test split is untouched by it.

        With ``r`` identities outside the test split and ``f = validation_fraction``, it holds
        ``min(max(1, round(r * f)), r - 2)`` of them when ``f > 0`` and ``r >= 3``, else none (then
        ``train`` keeps all ``r``); ``train`` always keeps at least 2. They are the first in an
        order hashed from ``split_seed`` and each name, like the test split but with another salt,
        so the two rankings are unrelated; the same names and seed give the same identities."""
        rest = np.flatnonzero(~test)
        r = len(rest)
        n_validation = 0
        if self.validation_fraction > 0 and r >= 3:
            n_validation = min(max(1, round(r * self.validation_fraction)), r - 2)
        rank = sorted(rest.tolist(), key=lambda i: hashlib.sha256(
            f"validation/{self.split_seed}/{names[i]}".encode("utf-8",
                                                               "surrogatepass")).hexdigest())
        mask = np.zeros(len(names), dtype=bool)
        mask[rank[:n_validation]] = True
        return mask

    def _split_remedy(self) -> str:
        """How to get identities into a split that is too small (the end of an error message)."""
        return "add identities, or set validation_fraction=0"

    def _why_no_validation(self) -> str:
        """Why the validation split is empty (for an error message)."""
        outside_test = len(self.identities) - len(self._splits["test"])
        return (f"{outside_test} identities are outside the test split, and validation needs at "
                f"least 3 of them and validation_fraction > 0, here {self.validation_fraction}")

    # -- listing and the prepared array ----------------------------------------------------------

    def _stat_and_dedupe(self, listed: list[tuple[str, Path]]) -> list[_Unit]:
        """Units sorted by identity then path, each resolved file once (the first in that order)."""
        units: list[_Unit] = []
        seen: dict[str, str] = {}
        for identity, path in sorted(listed, key=lambda item: (item[0], str(item[1]))):
            resolved = os.path.realpath(path)
            if resolved in seen:
                if seen[resolved] != identity:
                    self._skipped.append((str(path),
                                          f"same file as one of identity {seen[resolved]!r}"))
                continue
            try:
                st = os.stat(resolved)
            except OSError as err:
                self._skipped.append((str(path), f"cannot read ({err.strerror or err})"))
                continue
            seen[resolved] = identity
            units.append(_Unit(identity, Path(path), resolved, st.st_size, st.st_mtime_ns))
        return units

    def _cache_key(self, units: list[_Unit]) -> str:
        description = {
            "version": CACHE_VERSION, "kind": self.kind, "settings": self._settings(),
            "units": [[u.identity, u.resolved, u.size, u.mtime_ns] for u in units],
        }
        text = json.dumps(description, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def _prepare(self, units: list[_Unit]) -> tuple[Path, list[int], dict]:
        """Find or build the prepared array. Returns its file, the rows each unit filled (rows are
        in unit order, so an identity's rows are contiguous) and the read problems."""
        key = self._cache_key(units)
        self.fingerprint = key
        slug = (re.sub(r"[^A-Za-z0-9._-]+", "_", Path(os.path.realpath(self.root)).name)[:40]
                or "data")
        npy = self.cache_dir / f"{self.kind}-{slug}-{key[:24]}.npy"
        meta_file = npy.with_suffix(".json")
        meta = self._read_meta(npy, meta_file, key, len(units))
        if meta is None:
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                meta = self._build(units, npy, meta_file, key)
            except OSError as err:
                raise PairDataError(f"cannot write prepared images to {self.cache_dir} ({err}); "
                                    "choose another folder with cache_dir") from err
        problems = {k: [tuple(p) for p in meta[k]] for k in ("skipped", "partly_read")}
        return npy, meta["counts"], problems

    def _read_meta(self, npy: Path, meta_file: Path, key: str, n_units: int) -> dict | None:
        """The description of a complete cache for ``key``, or None to build one."""
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            shape = np.load(npy, mmap_mode="r").shape
        except (OSError, ValueError):
            return None
        s = self.image_size
        complete = (
            meta.get("key") == key and len(meta.get("counts", ())) == n_units
            and shape[1:] == (3, s, s) and shape[0] >= sum(meta["counts"])
        )
        return meta if complete else None

    def _build(self, units: list[_Unit], npy: Path, meta_file: Path, key: str) -> dict:
        """Decode every unit into a new array, written under a temporary name and renamed only when
        complete (with its description written last, the same way: see
        :func:`rodi.atomic.replacing`), so an interrupted build is never reused."""
        skipped: list[list[str]] = []
        partly_read: list[list[str]] = []
        reserve = []
        for unit in units:
            try:
                reserve.append(self._reserve(unit.path))
            except _Unreadable as err:
                skipped.append([str(unit.path), err.reason])
                reserve.append(0)
        counts = [0] * len(units)
        if sum(reserve) == 0:
            problems = self._skipped + [tuple(p) for p in skipped]
            raise PairDataError(self._nothing_usable(f"none of its {len(units)} {self.file_kind} "
                                                     "files could be read", problems))
        s = self.image_size
        with replacing(npy) as tmp_npy:
            data = np.lib.format.open_memmap(tmp_npy, mode="w+", dtype=np.uint8,
                                             shape=(sum(reserve), 3, s, s))
            row = 0
            bar = tqdm(total=sum(reserve), unit="image", desc=f"preparing {self.root.name}",
                       disable=not self.progress)
            with bar:
                for i, unit in enumerate(units):
                    if reserve[i] == 0:
                        continue
                    start = row
                    try:
                        for frame in self._frames(unit.path):
                            if row - start == reserve[i]:
                                break
                            data[row] = frame.transpose(2, 0, 1)
                            row += 1
                            bar.update(1)
                    except _Unreadable as err:
                        (partly_read if row > start else skipped).append([str(unit.path),
                                                                          err.reason])
                    counts[i] = row - start
                    bar.update(reserve[i] - counts[i])
            data.flush()
            del data
        meta = {"key": key, "root": os.path.realpath(self.root), "settings": self._settings(),
                "counts": counts, "skipped": skipped, "partly_read": partly_read}
        with replacing(meta_file) as tmp_meta:
            tmp_meta.write_text(json.dumps(meta), encoding="utf-8")
        self._remove_stale(meta_file, meta)
        return meta

    def _remove_stale(self, meta_file: Path, meta: dict) -> None:
        """Delete earlier arrays of the same root and settings: the files they were made from have
        changed, so they can never be used again, and each may take gigabytes."""
        prefix = meta_file.stem.rsplit("-", 1)[0]
        for other in self.cache_dir.glob(f"{prefix}-*.json"):
            if other == meta_file:
                continue
            try:
                old = json.loads(other.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if (isinstance(old, dict)
                    and (old.get("root"), old.get("settings")) == (meta["root"], meta["settings"])):
                other.with_suffix(".npy").unlink(missing_ok=True)
                other.unlink(missing_ok=True)

    def _index(self, units: list[_Unit], counts: list[int]) -> None:
        """Group rows by identity, leave out identities with one image, split, warn and check."""
        offsets: dict[str, int] = {}
        totals: dict[str, int] = {}
        row = 0
        for unit, count in zip(units, counts):
            offsets.setdefault(unit.identity, row)
            totals[unit.identity] = totals.get(unit.identity, 0) + count
            row += count
        self._single = [name for name, n in totals.items() if n == 1]
        self.identities = [name for name, n in totals.items() if n >= 2]
        self.images_per_identity = torch.tensor([totals[n] for n in self.identities],
                                                dtype=torch.long)
        self._offsets = torch.tensor([offsets[n] for n in self.identities], dtype=torch.long)
        self._warn()
        if row == 0:
            raise PairDataError(self._nothing_usable(f"none of its {len(units)} {self.file_kind} "
                                                     "files could be read", self._skipped))
        if len(self.identities) < 2:
            raise PairDataError(
                f"{self.root}: {len(self.identities)} identit"
                f"{'y has' if len(self.identities) == 1 else 'ies have'} "
                f"two or more usable {self.item}s (of {len(totals)} found); training needs at "
                "least 2, because the critics compare each appearance with other appearances as "
                "negatives"
            )
        test = self._test_mask(self.identities)
        validation = self._validation_mask(self.identities, test) & ~test
        self._splits = {
            "train": torch.from_numpy(np.flatnonzero(~test & ~validation)).long(),
            "validation": torch.from_numpy(np.flatnonzero(validation)).long(),
            "test": torch.from_numpy(np.flatnonzero(test)).long(),
        }
        n_train = len(self._splits["train"])
        if n_train < 2:
            raise PairDataError(
                f"{self.root}: only {n_train} of {len(self.identities)} usable identities are left "
                f"for training after holding out {int(test.sum())} for test and "
                f"{int(validation.sum())} for validation; training needs at least 2, because the "
                "critics compare each appearance with other appearances as negatives. To fix it, "
                f"{self._split_remedy()}"
            )

    def _warn(self) -> None:
        problems = self._skipped + self._partly_read
        if problems:
            counts = f"{len(self._skipped)} file(s) skipped"
            if self._partly_read:
                counts += f", {len(self._partly_read)} read only in part"
            examples = "; ".join(f"{p} ({why})" for p, why in problems[:_EXAMPLES_IN_WARNINGS])
            warnings.warn(f"{self.root}: {counts}, e.g. {examples}. `rodi data inspect` "
                          "(or summary()) lists them all", PairDataWarning, stacklevel=4)
        if self._single:
            names = ", ".join(repr(n) for n in self._single[:_EXAMPLES_IN_WARNINGS])
            warnings.warn(f"{self.root}: left out {len(self._single)} identit"
                          f"{'y' if len(self._single) == 1 else 'ies'} with a single usable "
                          f"{self.item} (a pair needs two different {self.item}s of one identity), "
                          f"e.g. {names}",
                          PairDataWarning, stacklevel=4)

    def _nothing_usable(self, what: str, problems: list[tuple[str, str]] = ()) -> str:
        message = f"{self.root}: no usable {self.item}s: {what}"
        if problems:
            message += ", e.g. " + "; ".join(f"{p} ({why})"
                                             for p, why in problems[:_EXAMPLES_IN_WARNINGS])
        return message

    def __getstate__(self) -> dict:
        # A memory map would be pickled as a full copy of the data; reopen it instead.
        state = dict(self.__dict__)
        del state["_data"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._data = np.load(self._cache_file, mmap_mode="r")

    # -- the interface the trainer uses ----------------------------------------------------------

    def split(self, name: str) -> torch.Tensor:
        """Identity indices (into :attr:`identities`) of split ``train``, ``validation`` or
        ``test``, (K,) long, sorted; the three are disjoint and together hold every identity.

        ``test`` holds the identities held out for reported transfer errors and pictures (a
        hashed ``validation_fraction`` of all identities, or the index file's ``test`` rows).
        ``validation`` holds identities held out of training and used only to choose
        ``best.pt``, so model selection never looks at test data (a hashed
        ``validation_fraction`` of the non-test identities, see :meth:`_validation_mask`, or the
        index file's ``validation``/``val`` rows); it may be empty. ``train`` holds the rest.

        Raises:
            ValueError: for an unknown split name.
        """
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return self._splits[name]

    def _split_identities(self, name: str) -> torch.Tensor:
        ids = self.split(name)
        if len(ids) == 0:
            if name == "validation":
                raise PairDataError(f"{self.root}: split 'validation' holds no identities "
                                    f"({self._why_no_validation()}); {self._split_remedy()}")
            raise PairDataError(f"{self.root}: split {name!r} holds no identities "
                                f"(validation_fraction={self.validation_fraction}); use "
                                "split='train' or hold some out")
        return ids

    def _two_rows(self, identity: torch.Tensor,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of two different images of each identity, (B,) long each."""
        count = self.images_per_identity[identity]
        first = (torch.rand(len(identity), generator=generator, dtype=torch.float64) * count).long()
        shift = 1 + (torch.rand(len(identity), generator=generator, dtype=torch.float64)
                     * (count - 1)).long()
        offset = self._offsets[identity]
        return offset + first, offset + (first + shift) % count

    def _images(self, rows: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, S, S) float32 in [-1, 1] from rows of the array, flipped where ``flip`` is
        True."""
        x = torch.from_numpy(np.asarray(self._data[rows.numpy()])).float().div_(127.5).sub_(1.0)
        if flip is not None and flip.any():
            x[flip] = x[flip].flip(-1)
        return x

    def sample_pairs(self, batch_size: int, generator: torch.Generator,
                     split: str = "train") -> dict:
        """Training pairs: two different images of one identity of ``split`` (``train``,
        ``validation`` or ``test``; see :meth:`split`).

        Returns a dict with ``pose_image`` (x, whose pose is encoded) and ``appearance_image`` (x',
        whose appearance is encoded), both (B, 3, S, S) float32 in [-1, 1]; ``pose_identity`` and
        ``appearance_identity`` (equal), (B,) long indices into :attr:`identities`; ``pose_index``
        and ``appearance_index`` (always different), (B,) long rows of the prepared array. With
        ``flip``, each image is mirrored with probability 1/2, independently, drawn from
        ``generator``.
        """
        ids = self._split_identities(split)
        identity = ids[torch.randint(len(ids), (batch_size,), generator=generator)]
        pose_row, appearance_row = self._two_rows(identity, generator)
        flips = [None, None]
        if self.flip:
            flips = [torch.rand(batch_size, generator=generator) < 0.5 for _ in range(2)]
        return {
            "pose_image": self._images(pose_row, flips[0]),
            "appearance_image": self._images(appearance_row, flips[1]),
            "pose_identity": identity,
            "appearance_identity": identity.clone(),
            "pose_index": pose_row,
            "appearance_index": appearance_row,
        }

    def fixed_examples(self, n: int, split: str = "test", seed: int = 1) -> tuple[dict, dict]:
        """``n`` appearance inputs and ``n`` pose inputs, for transfer matrices that stay the same
        over a run: ``({"image": (n, 3, S, S)}, {"image": (n, 3, S, S)})`` in [-1, 1]. The two
        sets come from distinct identities where the split has ``2 n``; otherwise identities are
        reused, with each pose input still from another identity than the appearance input beside
        it where the split has two. ``split`` is ``train``, ``validation`` or ``test``."""
        g = torch.Generator().manual_seed(seed)
        ids = self._split_identities(split)
        order = ids[torch.randperm(len(ids), generator=g)]
        k = torch.arange(n)
        shift = n % len(ids) or 1
        appearance = order[k % len(ids)]
        pose = order[(k + shift) % len(ids)]
        rows = [self._offsets[i] + (torch.rand(n, generator=g, dtype=torch.float64)
                                    * self.images_per_identity[i]).long()
                for i in (appearance, pose)]
        return {"image": self._images(rows[0])}, {"image": self._images(rows[1])}

    def frames(self, identity: int, positions: torch.Tensor | None = None) -> torch.Tensor:
        """The images of one identity in their order: (N, 3, S, S) float32 in [-1, 1].

        The order is that of the files: sorted by path within the identity folder (``folder``,
        ``index``; ``rodi data tracks`` names crops by their frame index, zero-padded, so this is
        time order) and decode order within a video (``videos``, after ``frame_stride`` and
        ``time_window``). Position 0 is the identity's first frame, as FOMM's protocol needs
        (:mod:`rodi.evaluation.fomm`).

        Args:
            identity: index into :attr:`identities`.
            positions: (n,) long positions within the identity (0 .. N - 1), or None for all.

        Raises:
            IndexError: ``identity`` or a position is out of range.
        """
        if not 0 <= int(identity) < len(self.identities):
            raise IndexError(f"identity {identity} is not in 0..{len(self.identities) - 1}")
        count = int(self.images_per_identity[identity])
        positions = (torch.arange(count) if positions is None
                     else torch.as_tensor(positions, dtype=torch.long).reshape(-1))
        if len(positions) and (positions.min() < 0 or positions.max() >= count):
            raise IndexError(f"identity {identity} has {count} images; positions must be in "
                             f"0..{count - 1}")
        return self._images(self._offsets[identity] + positions)

    def held_out_pairs(self, n: int, seed: int = 0, split: str = "test") -> dict:
        """Fixed pairs with an exact transfer target: two different images of one identity.

        Rendering the appearance of ``appearance_image`` in the pose of ``pose_image`` should give
        ``pose_image`` itself, since both show the same appearance; so this measures transfer error
        on any paired data. Returns ``appearance_image``, ``pose_image`` and ``target`` (the same
        tensor as ``pose_image``), (n, 3, S, S) float32 in [-1, 1]; ``identity``, (n,) long;
        ``appearance_index`` and ``pose_index``, (n,) long rows. The same for the same ``seed``.

        ``split`` is ``test`` for reported numbers, ``validation`` for choosing ``best.pt`` (never
        ``test``, so model selection never sees test data), or ``train``.

        Raises:
            PairDataError: the split holds no identities (an empty ``validation`` split: too few
                identities outside ``test``, or no ``validation`` rows in an index file).
        """
        g = torch.Generator().manual_seed(seed)
        ids = self._split_identities(split)
        identity = ids[torch.randint(len(ids), (n,), generator=g)]
        appearance_row, pose_row = self._two_rows(identity, g)
        pose = self._images(pose_row)
        return {
            "appearance_image": self._images(appearance_row), "pose_image": pose, "target": pose,
            "identity": identity, "appearance_index": appearance_row, "pose_index": pose_row,
        }

    def summary(self) -> dict:
        """What was found: identities per split (``train``, ``validation``, ``test``), usable
        images, images per identity (min, median, max), skipped files and files read only in part
        as ``(path, reason)``, and the identities left out for having one usable image."""
        counts = self.images_per_identity.numpy()
        return {
            "kind": self.kind,
            "root": str(self.root),
            "image_size": self.image_size,
            "identities": {name: len(self.split(name)) for name in SPLITS},
            "images": int(counts.sum()),
            "images_per_identity": {"min": int(counts.min()), "median": float(np.median(counts)),
                                    "max": int(counts.max())},
            "skipped": list(self._skipped),
            "partly_read": list(self._partly_read),
            "single_image_identities": list(self._single),
            "cache": str(self._cache_file),
        }


def _walk(root: Path, skipped: list[tuple[str, str]]) -> Iterator[Path]:
    """Every file under ``root`` in sorted order, following links to folders but visiting each
    folder once (a link loop ends), leaving out hidden names (``.DS_Store``, ``._x.jpg``)."""
    visited = set()

    def unlistable(err: OSError) -> None:
        skipped.append((str(err.filename), f"cannot list folder ({err.strerror or err})"))

    for folder, dirs, files in os.walk(root, onerror=unlistable, followlinks=True):
        try:
            st = os.stat(folder)
        except OSError as err:
            unlistable(err)
            continue
        if (st.st_dev, st.st_ino) in visited:
            dirs[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def _require_folder(root: Path, what: str) -> None:
    if not root.is_dir():
        raise PairDataError(f"{root}: not a folder; {what}")


class IdentityFolder(PairImages):
    """``ROOT/<identity>/<images>``: a pair is two different images of one identity.

    Images may be in subfolders of an identity folder; files that are not images (by suffix, see
    :data:`rodi.data.images.IMAGE_SUFFIXES`) are ignored, images directly in ROOT are skipped. See
    :class:`PairImages` for the options and the interface.
    """

    kind = "identities"

    def _list(self) -> list[tuple[str, Path]]:
        _require_folder(self.root, "an identity folder source needs ROOT/<identity>/<images>")
        listed = []
        for path in _walk(self.root, self._skipped):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            parts = path.relative_to(self.root).parts
            if len(parts) == 1:
                self._skipped.append((str(path),
                                      "not in an identity folder (ROOT/<identity>/<images>)"))
            else:
                listed.append((parts[0], path))
        return listed


class VideoFolder(PairImages):
    """A folder (searched recursively) of videos: each video is one identity, a pair is two
    different frames of it.

    Args:
        root: the folder; files ending in one of :data:`VIDEO_SUFFIXES` (any case) are videos.
        frame_stride: keep every ``frame_stride``-th frame (of those in the time window).
        time_window: ``(start_s, end_s)``: keep frames shown at ``start_s <= t < end_s`` seconds
            from the start of the video; ``end_s`` may be None for the end. None keeps all.
        **options: as for :class:`PairImages`.

    Frames are rotated as the video's display matrix asks (portrait phone videos).
    """

    kind = "videos"
    file_kind = "video"
    item = "frame"

    def __init__(self, root: str | os.PathLike, *, frame_stride: int = 1,
                 time_window: tuple[float, float | None] | None = None, **options):
        if int(frame_stride) < 1:
            raise PairDataError(f"frame_stride must be 1 or more, got {frame_stride}")
        if time_window is not None:
            start, end = time_window
            time_window = (float(start), None if end is None else float(end))
            if start < 0 or (end is not None and end <= start):
                raise PairDataError("time_window must be (start_s, end_s) with 0 <= start_s < "
                                    f"end_s, got {time_window}")
        self.frame_stride = int(frame_stride)
        self.time_window = time_window
        super().__init__(root, **options)

    def _settings(self) -> dict:
        window = None if self.time_window is None else list(self.time_window)
        return {**super()._settings(), "frame_stride": self.frame_stride, "time_window": window}

    def _list(self) -> list[tuple[str, Path]]:
        _require_folder(self.root, "a video folder source needs a folder of videos")
        return [(path.relative_to(self.root).as_posix(), path)
                for path in _walk(self.root, self._skipped)
                if path.suffix.lower() in VIDEO_SUFFIXES]

    def _reserve(self, path: Path) -> int:
        """Frames in the time window, counted from the packets without decoding them."""
        try:
            n = probe_video(path, self.time_window).frames
        except VideoReadError as err:
            raise _Unreadable(err.reason) from None
        return math.ceil(n / self.frame_stride)

    def _frames(self, path: Path) -> Iterator[np.ndarray]:
        try:
            yield from video_frames(path, self.image_size, self.background, self.fit,
                                    self.frame_stride, self.time_window)
        except VideoReadError as err:
            raise _Unreadable(err.reason) from None


class IndexFile(PairImages):
    """A CSV index: columns ``identity,path`` and optionally ``split``.

    Relative paths are read from the CSV's folder; absolute paths are allowed. A file listed
    twice is used once. ``split`` values (any case) are ``train``, ``validation`` (or ``val``,
    the same) or ``test``, naming the split of the row's identity (see :meth:`PairImages.split`);
    when the column is there it decides every split and ``validation_fraction`` is not used (no
    ``validation`` rows: the validation split is empty). Rows naming files that are not images
    are skipped and reported. See :class:`PairImages` for the options and the interface.
    """

    kind = "index"

    def _list(self) -> list[tuple[str, Path]]:
        if not self.root.is_file():
            raise PairDataError(f"{self.root}: not a file; an index source needs a CSV file with "
                                "the columns identity,path and optionally split")
        self._split_of: dict[str, str] | None = None
        listed = []
        try:
            with open(self.root, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                columns = {(c or "").strip().lower(): c for c in reader.fieldnames or ()}
                missing = [c for c in ("identity", "path") if c not in columns]
                if missing:
                    raise PairDataError(f"{self.root}: the header must name the columns "
                                        "identity,path (and optionally split); found "
                                        f"{', '.join(reader.fieldnames or ()) or 'none'}")
                if "split" in columns:
                    self._split_of = {}
                for line, row in enumerate(reader, start=2):
                    where = f"{self.root}:{line}"
                    identity = (row[columns["identity"]] or "").strip()
                    given = (row[columns["path"]] or "").strip()
                    if not identity or not given:
                        self._skipped.append((where, "empty identity or path"))
                        continue
                    path = Path(given).expanduser()
                    path = path if path.is_absolute() else self.root.parent / path
                    if path.suffix.lower() not in IMAGE_SUFFIXES:
                        self._skipped.append((str(path), "not an image file (suffix not in "
                                              f"{', '.join(IMAGE_SUFFIXES)})"))
                        continue
                    if self._split_of is not None:
                        self._record_split(identity, (row[columns["split"]] or "").strip(), where)
                    listed.append((identity, path))
        except UnicodeDecodeError as err:
            raise PairDataError(f"{self.root}: not UTF-8 text ({err})") from None
        except csv.Error as err:
            raise PairDataError(f"{self.root}: not a readable CSV file ({err})") from None
        return listed

    def _record_split(self, identity: str, value: str, where: str) -> None:
        split = SPLIT_NAMES.get(value.lower())
        if split is None:
            raise PairDataError(f"{where}: split {value!r} is not one of {', '.join(SPLIT_NAMES)}")
        earlier = self._split_of.setdefault(identity, split)
        if earlier != split:
            raise PairDataError(f"{where}: identity {identity!r} is listed in both {earlier} and "
                                f"{split}; the split is by identity")

    def _test_mask(self, names: list[str]) -> np.ndarray:
        if self._split_of is None:
            return super()._test_mask(names)
        return np.array([self._split_of[n] == "test" for n in names], dtype=bool)

    def _validation_mask(self, names: list[str], test: np.ndarray) -> np.ndarray:
        if self._split_of is None:
            return super()._validation_mask(names, test)
        return np.array([self._split_of[n] == "validation" for n in names], dtype=bool)

    def _split_remedy(self) -> str:
        if self._split_of is None:
            return super()._split_remedy()
        return ("mark more identities in the split column of the index file (train, validation "
                "or test)")

    def _why_no_validation(self) -> str:
        if self._split_of is None:
            return super()._why_no_validation()
        return "no row of the index file's split column says validation or val"


_SOURCES = {"identities": IdentityFolder, "videos": VideoFolder, "index": IndexFile}
_VIDEO_OPTIONS = {"frame_stride": 1, "time_window": None}


def guess_kind(path: str | os.PathLike) -> str:
    """``index`` for a .csv file, ``videos`` for a folder whose media files are mostly videos,
    else ``identities``.

    Raises:
        PairDataError: the path is missing, a file other than a CSV, or a folder without media.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise PairDataError(f"{path}: no such file or folder")
    hint = ("give a folder of identity folders (ROOT/<identity>/<images>), a folder of videos, "
            "or a CSV index with the columns identity,path")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "index"
        raise PairDataError(f"{path}: cannot tell what kind of pair source this file is; {hint}")
    videos = images = 0
    for file in _walk(path, []):
        suffix = file.suffix.lower()
        videos += suffix in VIDEO_SUFFIXES
        images += suffix in IMAGE_SUFFIXES
        if videos + images >= 1000:
            break
    if videos + images == 0:
        raise PairDataError(f"{path}: found no images ({', '.join(IMAGE_SUFFIXES)}) or videos "
                            f"({', '.join(VIDEO_SUFFIXES)}); {hint}")
    return "videos" if videos > images else "identities"


def open_pair_source(path: str | os.PathLike, kind: str | None = None, **options) -> PairImages:
    """Open a pair source, choosing the kind from ``path`` when ``kind`` is None (see
    :func:`guess_kind`). ``options`` go to the source; ``frame_stride`` and ``time_window`` may be
    given at their defaults for any kind, so one configuration serves all.

    Raises:
        PairDataError: unknown kind, a video option for images, or the source's own errors.
    """
    if kind is None:
        kind = guess_kind(path)
    if kind not in _SOURCES:
        raise PairDataError(f"unknown pair source kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind != "videos":
        for name, default in _VIDEO_OPTIONS.items():
            value = options.pop(name, default)
            if value != default:
                raise PairDataError(f"{name}={value!r} applies to video folders only, and {path} "
                                    f"is opened as {kind!r}")
    return _SOURCES[kind](path, **options)

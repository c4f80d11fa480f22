"""What every source that renders labelled characters exactly (``sprites``, ``mocap``, ``flare``)
shares: labels, training pairs, test triplets with exact targets, fixed examples, and an atomic
on-disk cache for what is expensive to prepare.

A subclass provides ``render(character, pose)``, ``split(name)``, ``num_poses``, ``characters``
((N, len(appearance_attributes)) long choices) and ``pose_labels`` ((P, 3) long action, direction,
frame), and may override the pose-drawing hooks.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rodi.atomic import replacing

POSE_ATTRIBUTES = ("action", "direction", "frame")
SPLITS = ("train", "validation", "test")
VALIDATION_FRACTION = 0.1  # of the published training characters, held out to choose best.pt
VALIDATION_SEED = 1357


def cached_arrays(path: Path, build: Callable[[], dict[str, np.ndarray]],
                  what: str) -> dict[str, np.ndarray]:
    """The arrays stored in ``path`` (.npz), else ``build()``'s, saved there for next time.

    The file is written to a temporary name and renamed (:func:`rodi.atomic.replacing`), so a
    killed build leaves nothing that is later trusted; an unreadable file is built again and
    replaced; a cache folder that cannot be written only gives a warning naming ``what``.
    """
    if path.is_file():
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # unreadable cache: build again and replace it
    arrays = build()
    try:
        with replacing(path) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no suffix
            np.savez(f, **arrays)
    except OSError as err:
        warnings.warn(f"could not cache {what} in {path.parent} ({err}); they will be prepared "
                      "again next time", stacklevel=3)
    return arrays


class LabelledCharacters:
    """Pairs, triplets and labels of a source that renders any character in any pose."""

    pose_attributes = POSE_ATTRIBUTES
    appearance_attributes: tuple[str, ...] = ()

    def _published_split(self, name: str) -> torch.Tensor:
        """Character indices of the source's published ``train`` or ``test`` split (subclasses)."""
        raise NotImplementedError

    def split(self, name: str) -> torch.Tensor:
        """Character indices (K,) long of split ``train``, ``validation`` or ``test``.

        ``test`` is the published held-out split (what reports score). ``validation`` is a fixed
        ``VALIDATION_FRACTION`` of the published training characters (100 of Sprites' 1,000), held
        out of ``train`` and used only to choose ``best.pt``, so model selection never sees test
        data. ``train`` is the rest of the published training characters.

        Raises:
            ValueError: for an unknown split name.
        """
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        if name == "test":
            return self._published_split("test")
        # drawn once: split() runs every step
        cache = self.__dict__.setdefault("_carved_splits", {})
        if not cache:
            published = self._published_split("train")
            order = torch.from_numpy(
                np.random.RandomState(VALIDATION_SEED).permutation(len(published)))
            n_validation = max(1, round(len(published) * VALIDATION_FRACTION))
            cache["validation"] = published[order[:n_validation].sort().values]
            cache["train"] = published[order[n_validation:].sort().values]
        return cache[name]

    @torch.no_grad()
    def label_equivalents(self, character: torch.Tensor,
                          pose: torch.Tensor) -> dict[str, torch.Tensor]:
        """Which values of each pose label name a pose that renders exactly like ``pose`` for that
        character: a judge cannot tell them apart, so scoring it modulo identical renders (the
        learning-speed issue; docs/method.md section 8) takes any of them as right.

        Some labels render identically on Sprites: spellcast repeats a column, slash repeats two,
        and the first frame of one action can match another's. Pose p' is "p with label L set to v"
        (the other labels kept); where no such pose exists, v is not equivalent.

        Args:
            character, pose: (B,) long indices.

        Returns:
            ``equivalent_<label>``: (B, classes) bool per pose label, True at the true value; an
            empty dict where label values do not name single poses (mocap: many frames per label).
        """
        table = self.__dict__.get("_label_swaps")
        if table is None:
            index = {tuple(row): i for i, row in enumerate(self.pose_labels.tolist())}
            if len(index) != len(self.pose_labels):
                table = {}
            else:
                table = {}
                for i, name in enumerate(self.pose_attributes):
                    classes = int(self.pose_labels[:, i].max()) + 1
                    swap = torch.full((len(self.pose_labels), classes), -1, dtype=torch.long)
                    for p, row in enumerate(self.pose_labels.tolist()):
                        for v in range(classes):
                            swap[p, v] = index.get(tuple(row[:i] + [v] + row[i + 1:]), -1)
                    table[name] = swap
            self.__dict__["_label_swaps"] = table
        if not table:
            return {}
        # character -> (P,) hash of each pose's render
        hashes = self.__dict__.setdefault("_render_hashes", {})
        missing = [c for c in character.unique().tolist() if c not in hashes]
        if missing:
            weights = None
            for c in missing:
                parts = []
                # bounded memory per character
                for poses in torch.arange(self.num_poses).split(128):
                    pixels = ((self.render(torch.full_like(poses, c), poses) + 1)
                              * 127.5).round().long().flatten(1)
                    if weights is None:
                        # two random projections of the uint8 pixels: equal renders hash equal,
                        # and unequal ones collide with probability about 2**-62 (sums stay far
                        # below 2**63)
                        weights = torch.randint(1, 2**31 - 1, (2, pixels.shape[1]),
                                                generator=torch.Generator().manual_seed(0))
                    parts.append(torch.stack([(pixels * w).sum(1) for w in weights], 1))
                hashes[c] = torch.cat(parts)  # (P, 2)
        h = torch.stack([hashes[c] for c in character.tolist()])  # (B, P, 2)
        rows = torch.arange(len(character))
        own = h[rows, pose]  # (B, 2)
        out = {}
        for name, swap in table.items():
            candidates = swap[pose]  # (B, classes) pose index or -1
            same = (h[rows[:, None], candidates.clamp(min=0)] == own[:, None]).all(-1)
            out[f"equivalent_{name}"] = same & (candidates >= 0)
        return out

    def labels(self, character: torch.Tensor, pose: torch.Tensor) -> dict[str, torch.Tensor]:
        """One (B,) long tensor per appearance attribute, ``action``, ``direction``, ``frame``,
        ``character`` and ``pose``."""
        out = {name: self.characters[character, i]
               for i, name in enumerate(self.appearance_attributes)}
        pl = self.pose_labels[pose]
        out.update(action=pl[:, 0], direction=pl[:, 1], frame=pl[:, 2], character=character,
                   pose=pose)
        return out

    def _pose_pairs(self, n: int, split: str,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(p, q): ``n`` pairs of poses, by default uniform over all poses with q != p."""
        p = torch.randint(self.num_poses, (n,), generator=generator)
        q = (p + torch.randint(1, self.num_poses, (n,), generator=generator)) % self.num_poses
        return p, q

    def _example_poses(self, n: int, split: str, generator: torch.Generator) -> torch.Tensor:
        """``n`` poses for :meth:`fixed_examples`, by default uniform over all poses."""
        return torch.randint(self.num_poses, (n,), generator=generator)

    def _extras(self, character: torch.Tensor, pose: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image values beyond the labels (e.g. keypoints), prefixed like the labels."""
        return {}

    def _described(self, prefix: str, character: torch.Tensor,
                   pose: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {**self._extras(character, pose), **self.labels(character, pose)}
        return {f"{prefix}_{k}": v for k, v in out.items()}

    def sample_pairs(self, batch_size: int, generator: torch.Generator,
                     split: str = "train") -> dict:
        """Training pairs: one character of ``split``, two poses.

        Returns ``pose_image`` (x, whose pose is encoded) and ``appearance_image`` (x', whose
        appearance is encoded), both (B, 3, S, S) float32 in [-1, 1], and their labels (and
        extras) prefixed ``pose_`` and ``appearance_``.
        """
        chars = self.split(split)
        character = chars[torch.randint(len(chars), (batch_size,), generator=generator)]
        pose, other = self._pose_pairs(batch_size, split, generator)
        batch = {"pose_image": self.render(character, pose),
                 "appearance_image": self.render(character, other)}
        batch.update(self._described("pose", character, pose))
        batch.update(self._described("appearance", character, other))
        return batch

    def triplet_indices(self, n: int = 8000, seed: int = 0, split: str = "test") -> torch.Tensor:
        """Fixed triplets of ``split`` (``test`` for reports, ``validation`` for model selection)
        as (n, 4) long: character A, character B != A, pose p, pose q.
        The appearance input is A in q, the pose input B in p, the target A in p.

        Raises:
            ValueError: the split holds fewer than two characters.
        """
        g = torch.Generator().manual_seed(seed)
        chars = self.split(split)
        if len(chars) < 2:
            raise ValueError("triplets need at least two characters in the split")
        a = torch.randint(len(chars), (n,), generator=g)
        b = (a + torch.randint(1, len(chars), (n,), generator=g)) % len(chars)
        p, q = self._pose_pairs(n, split, g)
        return torch.stack([chars[a], chars[b], p, q], dim=1)

    def triplets(self, indices: torch.Tensor) -> dict:
        """Render triplets from :meth:`triplet_indices` rows: ``appearance_image`` (A in q),
        ``pose_image`` (B in p) and ``target`` (A in p), each (B, 3, S, S) in [-1, 1], with the
        inputs' labels (and extras; ``target_`` extras too)."""
        a, b, p, q = indices.unbind(1)
        batch = {"appearance_image": self.render(a, q), "pose_image": self.render(b, p),
                 "target": self.render(a, p)}
        batch.update({f"target_{k}": v for k, v in self._extras(a, p).items()})
        batch.update(self._described("appearance", a, q))
        batch.update(self._described("pose", b, p))
        return batch

    def fixed_examples(self, n: int, split: str = "test", seed: int = 1) -> tuple[dict, dict]:
        """``n`` appearance inputs and ``n`` pose inputs (``{"image": (n, 3, S, S)}`` each) from
        distinct characters of ``split``, the same every call: transfer matrices comparable over
        a run."""
        g = torch.Generator().manual_seed(seed)
        chars = self.split(split)
        pick = chars[torch.randperm(len(chars), generator=g)[: 2 * n] % len(chars)]
        poses = self._example_poses(2 * n, split, g)
        return ({"image": self.render(pick[:n], poses[:n])},
                {"image": self.render(pick[n:], poses[n:])})

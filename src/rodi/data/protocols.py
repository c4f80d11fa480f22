"""What a source of image pairs provides, as :class:`typing.Protocol` classes.

The trainer, the evaluation and the judges ask a source what it can do with ``isinstance``
against these protocols (all ``runtime_checkable``; like ``hasattr``, the check only looks for the
names, not for their signatures):

- :class:`PairSource`, every source: ``image_size``, ``split``, ``sample_pairs`` and
  ``fixed_examples``;
- :class:`HeldOutPairSource`, user data (``folder``, ``videos``, ``index``): ``held_out_pairs``,
  pairs of one identity, whose second image is the exact target of a transfer;
- :class:`OrderedFramesSource`, user data too: ``frames``, an identity's images in their order
  (first frame first), what FOMM's evaluation protocol and the appearance judge read;
- :class:`TripletSource`, the rendered sources (``sprites``, ``mocap``, ``flare``):
  ``triplet_indices`` and ``triplets``, exact targets of transfers between characters;
- :class:`LabelledSource`, the rendered sources too: labelled renders of any character in any
  pose (``render``, ``labels``, ``label_equivalents``, ...), what the judges and probes need;
- :class:`KeypointSource`, ``mocap`` only: ``keypoints``, the exact 2-D joints of every render.

Conventions of every method: images are (B, 3, S, S) float32 RGB tensors with pixels in [-1, 1]
(S = ``image_size``; -1 is black, 1 white), on the CPU; indices and labels are (B,) long tensors;
a ``split`` is ``train``, ``validation`` or ``test`` (``test`` for reported numbers,
``validation`` only to choose ``best.pt``, so that model selection never sees test data).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class PairSource(Protocol):
    """What every source offers: pairs of images that share an appearance, split by appearance.

    Attributes:
        image_size: side S in pixels of the square images it gives.
    """

    image_size: int

    def split(self, name: str) -> torch.Tensor:
        """The appearances (characters of a rendered source, identities of user data) of split
        ``name`` (``train``, ``validation`` or ``test``): (K,) long indices, sorted; the three
        splits are disjoint.

        Raises:
            ValueError: for an unknown split name.
        """
        ...

    def sample_pairs(self, batch_size: int, generator: torch.Generator,
                     split: str = "train") -> dict:
        """``batch_size`` training pairs of ``split``, drawn from ``generator`` alone (the same
        generator state gives the same batch).

        Returns:
            ``pose_image`` (x, whose pose is encoded) and ``appearance_image`` (x', whose
            appearance is encoded): (B, 3, S, S) float32 in [-1, 1], one appearance each in two
            different poses (two different images of one identity); and per-image values (labels,
            identities, rows, keypoints) prefixed ``pose_`` and ``appearance_``, (B, ...) each.
        """
        ...

    def fixed_examples(self, n: int, split: str = "test", seed: int = 1) -> tuple[dict, dict]:
        """``n`` appearance inputs and ``n`` pose inputs of ``split``, the same for the same
        ``seed`` (for transfer matrices comparable over a run).

        Returns:
            ``({"image": (n, 3, S, S)}, {"image": (n, 3, S, S)})``, float32 in [-1, 1]: the
            appearance inputs and the pose inputs, from other appearances where the split has them.
        """
        ...


@runtime_checkable
class HeldOutPairSource(PairSource, Protocol):
    """User data (``folder``, ``videos``, ``index``): pairs of one identity are exact targets, as
    rendering one image's appearance in the pose of another image of the same identity gives that
    other image back."""

    def held_out_pairs(self, n: int, seed: int = 0, split: str = "test") -> dict:
        """``n`` fixed pairs of ``split`` with an exact transfer target, the same for the same
        ``seed``.

        Returns:
            ``appearance_image``, ``pose_image`` and ``target`` (the same tensor as
            ``pose_image``): (n, 3, S, S) float32 in [-1, 1], two different images of one
            identity; ``identity``, ``appearance_index``, ``pose_index``: (n,) long.
        """
        ...


@runtime_checkable
class OrderedFramesSource(HeldOutPairSource, Protocol):
    """User data whose identities are clips: every image of an identity, in order (file names
    sorted, or a video's decode order), so that the first frame is known.

    Attributes:
        identities: the identities' names; indices into it are what :meth:`split` returns.
        images_per_identity: (K,) long, images of each identity (at least 2).
        fingerprint: a string that changes whenever the images would (a cache key).
    """

    identities: list[str]
    images_per_identity: torch.Tensor
    fingerprint: str

    def frames(self, identity: int, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Images ``positions`` ((n,) long, 0 is the first frame; None: all) of ``identity`` in
        order: (n, 3, S, S) float32 in [-1, 1]."""
        ...


@runtime_checkable
class TripletSource(PairSource, Protocol):
    """A source with exact targets of transfers between two appearances (``sprites``, ``mocap``,
    ``flare``): it renders appearance A in the pose of an image of appearance B."""

    def triplet_indices(self, n: int = 8000, seed: int = 0, split: str = "test") -> torch.Tensor:
        """``n`` fixed triplets of ``split``, the same for the same ``seed``: (n, 4) long rows
        (character A, character B != A, pose p, pose q). The appearance input is A in q, the pose
        input B in p, the exact target A in p.

        Raises:
            ValueError: the split holds fewer than two characters.
        """
        ...

    def triplets(self, indices: torch.Tensor) -> dict:
        """Render the (n, 4) rows of :meth:`triplet_indices`.

        Returns:
            ``appearance_image`` (A in q), ``pose_image`` (B in p) and ``target`` (A in p):
            (n, 3, S, S) float32 in [-1, 1]; the inputs' labels prefixed ``appearance_`` and
            ``pose_`` ((n,) long each, see :meth:`LabelledSource.labels`), and per-image extras
            such as keypoints (also ``target_``).
        """
        ...


@runtime_checkable
class LabelledSource(TripletSource, Protocol):
    """A source that renders any character in any pose exactly, with labels of both (``sprites``,
    ``mocap``, ``flare``): what the judges learn from and the leakage probes are scored on.

    Attributes:
        appearance_attributes: names of the appearance labels (e.g. Sprites' varied layers), in the
            order of the columns of ``characters``.
        pose_attributes: names of the pose labels, ``("action", "direction", "frame")``, in the
            order of the columns of ``pose_labels``.
        characters: (N, len(appearance_attributes)) long: the label values (choices) of each
            character.
        pose_labels: (P, len(pose_attributes)) long: the label values of each pose.
        num_poses: P.
    """

    appearance_attributes: tuple[str, ...]
    pose_attributes: tuple[str, ...]
    characters: torch.Tensor
    pose_labels: torch.Tensor
    num_poses: int

    def render(self, character: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Characters ``character`` ((B,) long indices into ``characters``) in poses ``pose``
        ((B,) long indices into ``pose_labels``): (B, 3, S, S) float32 in [-1, 1], exactly (the same
        indices give the same pixels)."""
        ...

    def labels(self, character: torch.Tensor, pose: torch.Tensor) -> dict[str, torch.Tensor]:
        """The labels of (B,) ``character`` in (B,) ``pose``: one (B,) long tensor per appearance
        attribute and per pose attribute, and ``character`` and ``pose`` themselves."""
        ...

    def label_equivalents(self, character: torch.Tensor,
                          pose: torch.Tensor) -> dict[str, torch.Tensor]:
        """Which values of each pose label render exactly like ``pose`` for that character (a judge
        cannot tell them apart): ``equivalent_<label>``, (B, classes) bool per pose label, True at
        the true value; an empty dict where label values do not name single poses."""
        ...


@runtime_checkable
class KeypointSource(LabelledSource, Protocol):
    """A labelled source whose renders come with exact 2-D keypoints (``mocap``): the judges then
    also estimate and score them."""

    def keypoints(self, character: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """(B, K, 2) float32 exact joint positions (x right, y down) in pixels of the S x S image
        of (B,) ``character`` in (B,) ``pose`` (K = 15 joints for mocap)."""
        ...

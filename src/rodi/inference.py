"""rodi's Python API: a trained model that takes and gives images in the form you hold them.

>>> import rodi
>>> model = rodi.load("humanoid")                       # a shipped model, a .safetensors export or a .pt checkpoint
>>> out = model.transfer("appearance.png", "pose.png")  # a PIL image: the appearance of one in the pose of the other

Inputs may be paths, PIL images, numpy arrays ((H, W, 3) uint8, or a list of them) or tensors
((B, 3, H, W) or (3, H, W) float in [-1, 1]). Files, PIL images and arrays are prepared exactly as the
command line prepares files (:class:`rodi.retarget.Renderer`: the training data's background, square
fit and size); a tensor already at the model's size is used as it is, any other tensor is prepared
like an image. Results come back in the kind of the first image argument: PIL images for paths and
PIL images, (S, S, 3) uint8 arrays for arrays, (B, 3, S, S) tensors in [-1, 1] on the CPU for tensors
(always batched, a (3, H, W) tensor too); otherwise a single input gives a single result and a list
gives a list. ``rodi transfer``, ``rodi retarget``,
``rodi interpolate`` and ``rodi serve`` load their models with :func:`load`.

Transfers use the posterior mean of the pose code (``AppearancePoseModel.transfer_pose``) and the
appearance code; docs/method.md sections 1 and 6.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from rodi.data.images import prepare_image, square_array, to_rgb, to_tensor
from rodi.retarget import Renderer, RetargetResult, grid_weights, interpolate as interpolate_codes, pose_code, render

ImageLike = Any  # str | os.PathLike | PIL.Image.Image | np.ndarray | torch.Tensor, or a list of those


class Model:
    """A trained appearance/pose model with the preprocessing of its training data.

    Build it with :func:`load`. Attributes: ``size`` (S, the side of the model's square images in
    pixels), ``device``, ``config`` (the run's :class:`rodi.config.Config`), ``network`` (the
    :class:`~rodi.models.networks.AppearancePoseModel`) and ``renderer`` (the
    :class:`~rodi.retarget.Renderer` the command line uses).
    """

    def __init__(self, renderer: Renderer):
        self.renderer = renderer
        self.network = renderer.model
        self.config = renderer.cfg
        self.size = renderer.size
        self.device = renderer.device

    def __repr__(self) -> str:
        c = self.config.model
        return (f"rodi.Model(size={self.size}, code={c.code_channels}x{c.code_size}x{c.code_size}, "
                f"data={self.config.data.source!r}, device={self.device})")

    # -- inputs and outputs -------------------------------------------------------------------

    def prepare(self, images: ImageLike) -> torch.Tensor:
        """Images as the model sees them: (B, 3, S, S) float32 in [-1, 1] on the model's device.

        Raises:
            ImageReadError: a file is missing or unreadable.
            TypeError: an input of an unsupported kind.
            ValueError: an array or tensor of the wrong shape, dtype or value range.
        """
        items, _ = _as_list(images)
        if not items:
            raise ValueError("no images given")
        return torch.cat([self._prepare_one(x) for x in items]).to(self.device)

    def _prepare_one(self, x) -> torch.Tensor:
        r = self.renderer
        if isinstance(x, (str, os.PathLike)):
            return to_tensor(prepare_image(x, self.size, r.background, r.fit))[None]
        if isinstance(x, Image.Image):
            if 0 in x.size:
                raise ValueError(f"an empty image ({x.size[0]} x {x.size[1]} pixels)")
            x = ImageOps.exif_transpose(x)  # as files are read (rodi.data.images.open_image)
            return to_tensor(square_array(to_rgb(x, r.background), self.size, r.background, r.fit))[None]
        if isinstance(x, np.ndarray):
            if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3 or 0 in x.shape:
                raise ValueError(f"an image array must be (H, W, 3) uint8 with H, W > 0, got {x.shape} {x.dtype}")
            return self._prepare_one(Image.fromarray(x))
        if isinstance(x, torch.Tensor):
            t = x[None] if x.dim() == 3 else x
            if t.dim() != 4 or t.shape[1] != 3 or not t.is_floating_point() or 0 in t.shape:
                raise ValueError(f"an image tensor must be (B, 3, H, W) or (3, H, W) float with B, H, W > 0, "
                                 f"got {tuple(x.shape)} {x.dtype}")
            t = t.detach().float().cpu()
            if not torch.isfinite(t).all():
                raise ValueError("an image tensor holds NaN or infinite values")
            if t.min() < -1.001 or t.max() > 1.001:
                raise ValueError(f"image tensors hold pixels in [-1, 1], got values in "
                                 f"[{t.min().item():.3g}, {t.max().item():.3g}]")
            if t.shape[-2:] == (self.size, self.size):
                return t.clamp(-1, 1)
            pixels = ((t.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(1, -1).numpy()
            return torch.cat([self._prepare_one(p) for p in pixels])
        raise TypeError(f"an image must be a path, a PIL image, a uint8 array or a tensor, not {type(x).__name__}")

    @staticmethod
    def _give(out: torch.Tensor, kind: str, single: bool):
        """(B, 3, S, S) renders in [-1, 1] as ``kind`` (tensor | array | pil)."""
        out = out.detach().cpu()
        if kind == "tensor":
            return out
        pixels = ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(1, -1).numpy()
        items = list(pixels) if kind == "array" else [Image.fromarray(p) for p in pixels]
        return items[0] if single else items

    # -- the model ----------------------------------------------------------------------------

    @torch.no_grad()
    def encode_pose(self, images: ImageLike) -> torch.Tensor:
        """Pose codes, the posterior mean of q(pi | x) that transfer uses: (B, C, h, w) float32 on
        the model's device, C = ``model.code_channels``, h = w = ``model.code_size`` of the config.

        Raises:
            ImageReadError, TypeError, ValueError: as :meth:`prepare`.
        """
        return pose_code(self.network, self.prepare(images))

    @torch.no_grad()
    def encode_appearance(self, images: ImageLike) -> torch.Tensor:
        """Appearance codes alpha(x): (B, C, h, w) float32 on the model's device, shaped as the
        pose codes.

        Raises:
            ImageReadError, TypeError, ValueError: as :meth:`prepare`.
        """
        return self.network.encode_appearance(self.prepare(images))

    @torch.no_grad()
    def decode(self, pose: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """Renders of pose codes with appearance codes, each (B, C, h, w) or (1, C, h, w) (broadcast
        to the other's batch): (B, 3, S, S) in [-1, 1] on the model's device.

        Raises:
            ValueError: batches of different lengths above one, or codes of another shape.
        """
        shape = (self.config.model.code_channels, self.config.model.code_size, self.config.model.code_size)
        for name, code in (("pose", pose), ("appearance", appearance)):
            if code.dim() != 4 or tuple(code.shape[1:]) != shape:
                raise ValueError(f"{name} codes must be (B, {shape[0]}, {shape[1]}, {shape[2]}), got {tuple(code.shape)}")
        if len(pose) != len(appearance) and 1 not in (len(pose), len(appearance)):
            raise ValueError(f"{len(pose)} pose and {len(appearance)} appearance codes: give equal numbers, or one of either")
        return render(self.network, pose.to(self.device), appearance.to(self.device))

    def transfer(self, appearance: ImageLike, pose: ImageLike):
        """The appearance of ``appearance`` in the pose of ``pose``.

        Batches pair up item by item; one side of a single image is broadcast to the other's batch.

        Returns:
            One render per pair, in the kind of ``appearance`` (see the module's docstring).

        Raises:
            ImageReadError, TypeError: as :meth:`prepare`.
            ValueError: batches of different lengths above one, or an input :meth:`prepare` refuses.
        """
        kind, single = _kind_of(appearance)
        a, p = self.prepare(appearance), self.prepare(pose)
        if len(a) != len(p) and 1 not in (len(a), len(p)):
            raise ValueError(f"{len(a)} appearance and {len(p)} pose images: give equal numbers, or one of either")
        single = single and _as_list(pose)[1]
        return self._give(self.decode(self.encode_pose(p), self.encode_appearance(a)), kind, single)

    def interpolate(self, appearance: Sequence[ImageLike], pose: Sequence[ImageLike], steps: int = 7):
        """The paper's interpolation figure: renders between two appearances (down the rows) and two
        poses (across the columns), each code walking linearly; the corners are plain transfers.

        Args:
            appearance: two images, the appearance of the first row and of the last.
            pose: two images, the pose of the first column and of the last.
            steps: renders per side, at least 2.

        Returns:
            ``steps`` rows of ``steps`` renders: a list of lists of PIL images or of (S, S, 3) uint8
            arrays, or for tensors one (steps, steps, 3, S, S) tensor in [-1, 1].

        Raises:
            ValueError: not two images on each side, or fewer than 2 steps.
        """
        kind, _ = _kind_of(appearance)
        a, p = self.prepare(appearance), self.prepare(pose)
        if len(a) != 2 or len(p) != 2:
            raise ValueError(f"interpolate takes two appearance and two pose images, got {len(a)} and {len(p)}")
        with torch.no_grad():
            cells = torch.cat([interpolate_codes(self.network, a, p, w)
                               for w in grid_weights(steps).split(self.renderer.batch_size)])
        if kind == "tensor":
            return cells.cpu().reshape(steps, steps, 3, self.size, self.size)
        flat = self._give(cells, kind, single=False)
        return [flat[i * steps:(i + 1) * steps] for i in range(steps)]

    def examples(self, n: int = 4, data_root: str | os.PathLike | None = None) -> tuple[list, list]:
        """``n`` appearance and ``n`` pose images from the model's own data (held-out identities
        where it has them; for ``humanoid``, mocap renders, made in seconds on first use): two lists
        of (S, S) PIL images.

        Args:
            data_root: where that data is on this machine, if not at the run's ``data.root``.

        Raises:
            SpritesDataError, MocapDataError, FlareDataError, PairDataError: the data cannot be
                opened here.
        """
        from dataclasses import replace

        from rodi.data.sources import data_errors, open_source

        data = self.config.data if data_root is None else replace(self.config.data, root=str(data_root))
        source = open_source(data, self.size, progress=False)
        try:
            appearance, pose = source.fixed_examples(n, split="test")
        except data_errors():  # user data with nothing held out
            appearance, pose = source.fixed_examples(n, split="train")
        return self._give(appearance["image"], "pil", False), self._give(pose["image"], "pil", False)

    def retarget(self, appearance: str | os.PathLike, pose_video: str | os.PathLike, output: str | os.PathLike,
                 side_by_side: bool = False, scale: int = 4, progress: bool = False) -> RetargetResult:
        """Motion retargeting (``rodi retarget``): ``appearance`` (an image, or a video whose frames'
        appearance codes are averaged) in the pose of every frame of ``pose_video``, written to
        ``output`` (.mp4, .mov or .mkv in H.264, or .gif) at the pose video's frame rate, each pixel
        of the renders as ``scale`` x ``scale`` pixels (4, as ``rodi retarget``). See
        :meth:`rodi.retarget.Renderer.retarget` for the options and the errors raised (a still
        image or an unreadable video as ``pose_video``, an unsupported output suffix)."""
        return self.renderer.retarget(appearance, pose_video, output, side_by_side=side_by_side, scale=scale,
                                      progress=progress)


def _as_list(images) -> tuple[list, bool]:
    """Inputs as a list of single images (tensors stay batched), and whether one image was given."""
    if isinstance(images, (list, tuple)):
        return list(images), False
    return [images], not (isinstance(images, torch.Tensor) and images.dim() == 4)


def _kind_of(images) -> tuple[str, bool]:
    """The output kind for these inputs (tensor | array | pil) and whether they are one image."""
    items, single = _as_list(images)
    first = items[0] if items else None
    if isinstance(first, torch.Tensor):
        return "tensor", False
    return ("array" if isinstance(first, np.ndarray) else "pil"), single


def load(name_or_path: str | os.PathLike = "humanoid", device: str | torch.device = "auto") -> Model:
    """A trained model: a shipped model's name (``humanoid``, see
    :func:`rodi.training.state.pretrained_names`), a ``.safetensors`` export or a training checkpoint
    (``.pt``). ``device``: ``auto`` (CUDA when present, else the CPU, as in training), ``cpu``,
    ``cuda``, ``cuda:N`` or a ``torch.device``.

    Returns:
        A :class:`Model` in eval mode (float32) on that device.

    Raises:
        CheckpointError: no such file or shipped model, or a file that is not a rodi model.
        ConfigError: an unknown device name, or CUDA asked for where there is none.
    """
    from rodi.training.state import resolve_device

    if not isinstance(device, torch.device):
        device = resolve_device(str(device))
    return Model(Renderer.from_checkpoint(name_or_path, device))

"""Inference in one place: loading a trained model (a training checkpoint, an export or a shipped
model), preparing inputs as its training data was prepared, transfer, interpolation and motion
retargeting (ICCV 2019, Esser et al.: the transfers, interpolations and videos the paper shows;
docs/method.md sections 1 and 6). rodi's Python API, the command line, ``rodi serve`` and the
evaluation all go through it.

>>> import rodi
>>> # a shipped model, a .safetensors export or a .pt checkpoint
>>> model = rodi.load("humanoid")
>>> # a PIL image: the appearance of one in the pose of the other
>>> out = model.transfer("appearance.png", "pose.png")

Inputs may be paths, PIL images, numpy arrays ((H, W, 3) uint8, or a list of them) or tensors
((B, 3, H, W) or (3, H, W) float in [-1, 1]). Files, PIL images and arrays are prepared exactly as
the training data (its background, square fit and size); a tensor already at the model's size is
used as it is, any other tensor is prepared like an image. Results come back in the kind of the
first image argument: PIL images for paths and PIL images, (S, S, 3) uint8 arrays for arrays,
(B, 3, S, S) tensors in [-1, 1] on the CPU for tensors (always batched, a (3, H, W) tensor too);
otherwise a single input gives a single result and a list gives a list.

Transfers use the posterior mean of the pose code (``AppearancePoseModel.transfer_pose``) and the
appearance code.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, replace
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from rodi.atomic import read_safetensors, write_safetensors
from rodi.config import Config, ConfigError, from_dict
from rodi.data.images import (
    expand_image_paths,
    prepare_image,
    square_array,
    to_rgb,
    to_tensor,
)
from rodi.data.sources import DataError, open_source
from rodi.data.video import (
    VideoInfo,
    VideoReadError,
    VideoWarning,
    is_video,
    probe_video,
    video_frames,
)
from rodi.distributed import resolve_device
from rodi.media import VideoWriteError, check_video_output, video_writer
from rodi.models.networks import AppearancePoseModel, build_model
from rodi.training.state import FORMAT_VERSION, CheckpointError, TrainState, read_checkpoint
from rodi.version import __version__
from rodi.viz import interpolation_grid, save_png, to_uint8

# str | os.PathLike | PIL.Image.Image | np.ndarray | torch.Tensor, or a list of those
ImageLike = Any

# -- loading and exporting ---------------------------------------------------------------------

EXPORT_FORMAT = "rodi-model"


PRETRAINED = Path(__file__).resolve().parent / "assets" / "models"


def pretrained_names() -> list[str]:
    """Names of the models shipped in the package (``rodi transfer -c humanoid``)."""
    return sorted(p.stem for p in PRETRAINED.glob("*.safetensors"))


def is_shipped(name_or_path: str | os.PathLike) -> bool:
    """Whether ``name_or_path`` names a shipped model rather than a file here: a bare name (no
    folder, no suffix) that is not a file and is one of :func:`pretrained_names`."""
    path = Path(name_or_path)
    return (not path.is_file() and path.suffix == "" and len(path.parts) == 1
            and (PRETRAINED / f"{path.name}.safetensors").is_file())


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """``name_or_path`` as a path, unless it is a bare name (no folder, no suffix) that is not a
    file here: then the shipped model of that name (see :func:`pretrained_names`).

    Raises:
        CheckpointError: a bare name that is neither a file nor a shipped model.
    """
    path = Path(name_or_path)
    if path.is_file() or path.suffix or len(path.parts) != 1:
        return path
    shipped = PRETRAINED / f"{path.name}.safetensors"
    if shipped.is_file():
        return shipped
    names = ", ".join(pretrained_names()) or "none"
    raise CheckpointError(f"{path}: neither a model file nor a shipped model (shipped models: "
                          f"{names})")


def export_model(checkpoint: str | os.PathLike, output: str | os.PathLike,
                 half: bool = False) -> Path:
    """Write the inference part of a checkpoint (encoders and decoder: the moving average of their
    weights where the run kept one; no critics, optimisers or RNG states) as a safetensors file
    whose metadata holds the config (JSON), the format version and the training step.
    :func:`load_model` and ``rodi transfer`` read it.

    Args:
        half: store floating-point weights as float16 (half the size; :func:`load_model` computes
            in float32 again).

    Raises:
        CheckpointError: the checkpoint cannot be read.
    """
    state = read_checkpoint(checkpoint)
    metadata = {"format": EXPORT_FORMAT, "format_version": str(FORMAT_VERSION),
                "rodi_version": __version__, "step": str(state["step"]),
                "config": json.dumps(state["config"])}
    weights = state["model"]
    if "ema" in state:  # torch's AveragedModel: the networks under "module.", and a counter
        weights = {k.removeprefix("module."): v for k, v in state["ema"].items()
                   if k.startswith("module.")}
    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
               for k, v in weights.items()}
    overflow = [k for k, v in tensors.items()
                if v.is_floating_point() and not torch.isfinite(v).all()]
    if overflow:
        raise CheckpointError(f"{checkpoint}: {overflow[0]} does not fit in float16 (or is not "
                              "finite); export it without --half")
    return write_safetensors(tensors, output, metadata)


def load_model(path: str | os.PathLike,
               device: torch.device | None = None) -> tuple[AppearancePoseModel, Config]:
    """The model and config of a training checkpoint (``.pt``), an export (``.safetensors``,
    float32 or float16 weights) or a shipped model's name (``humanoid``), in float32 and eval mode
    on ``device`` (default: the CPU). Neither format can run code when read.

    Raises:
        CheckpointError: no such file or shipped model, unreadable file, another format version,
            or weights that do not fit the stored config.
    """
    path = resolve_model_path(path)
    device = device or torch.device("cpu")
    if path.suffix != ".safetensors":
        state = TrainState.from_checkpoint(path, device)
        model = state.eval_model
        model.eval()
        return model, state.cfg
    if not path.is_file():
        raise CheckpointError(f"no model file at {path}")
    metadata, tensors = read_safetensors(path, CheckpointError)
    if (metadata.get("format") != EXPORT_FORMAT
            or metadata.get("format_version") != str(FORMAT_VERSION)):
        raise CheckpointError(f"{path} is not a rodi model of format version {FORMAT_VERSION} "
                              f"(format {metadata.get('format')!r}, "
                              f"version {metadata.get('format_version')!r})")
    try:
        cfg = from_dict(json.loads(metadata["config"]))
    except (KeyError, ValueError, ConfigError) as err:
        raise CheckpointError(f"{path}: its stored config is unusable ({err})") from None
    model = build_model(cfg)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in tensors.items()})
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit its config: "
                              f"{str(err).splitlines()[0]}") from None
    return model.to(device).eval(), cfg


# -- codes to pixels -----------------------------------------------------------------------------

FALLBACK_RATE = Fraction(25)


class InputLimitError(VideoReadError):
    """A video is longer than the caller allows (``rodi serve``'s limit); ``path`` and ``reason``
    as for :class:`~rodi.data.video.VideoReadError`, so it is refused the same way."""


@dataclass(frozen=True)
class RetargetResult:
    """What :meth:`Model.retarget` wrote.

    Attributes:
        path: the video.
        frames: frames written (one per decoded frame of the pose video).
        rate: frames per second, the pose video's.
        appearance_frames: images whose appearance codes were averaged (1 for an image).
    """

    path: Path
    frames: int
    rate: Fraction
    appearance_frames: int


def _batches(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


@torch.no_grad()
def render(model, pose_code: torch.Tensor, appearance_code: torch.Tensor) -> torch.Tensor:
    """Decode codes to pixels as :meth:`~rodi.models.networks.AppearancePoseModel.transfer` does:
    (B, 3, H, W) clamped to [-1, 1] from pose and appearance codes, each (B, C, h, w) or
    (1, C, h, w) (broadcast to the other's batch)."""
    b = max(len(pose_code), len(appearance_code))
    return model.decode(pose_code.expand(b, -1, -1, -1),
                        appearance_code.expand(b, -1, -1, -1)).clamp(-1, 1)


@torch.no_grad()
def pose_code(model, images: torch.Tensor) -> torch.Tensor:
    """The pose code transfer uses (:meth:`AppearancePoseModel.transfer_pose`, the posterior
    mean) of (B, 3, H, W) pixels in [-1, 1]: (B, C, h, w)."""
    return model.transfer_pose(images)


@torch.no_grad()
def mean_appearance_code(model, batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """The mean appearance code of all images in ``batches`` of (B, 3, H, W) pixels in [-1, 1]:
    (1, C, h, w). Averaging codes, not pixels, keeps what the frames of one
    appearance share and lets pose-dependent parts of single codes cancel.

    Raises:
        ValueError: ``batches`` holds no image.
    """
    total, count = None, 0
    for batch in batches:
        codes = model.encode_appearance(batch).sum(0, keepdim=True)
        total = codes if total is None else total + codes
        count += len(batch)
    if count == 0:
        raise ValueError("no images to average appearance codes over")
    return total / count


@torch.no_grad()
def interpolate(model, appearance: torch.Tensor, pose: torch.Tensor,
                weights: torch.Tensor) -> torch.Tensor:
    """Renders between two appearance codes and two pose codes (the posterior means).

    Args:
        appearance: (2, 3, H, W) pixels in [-1, 1]: the appearance at weight 0 and at weight 1.
        pose: (2, 3, H, W) pixels in [-1, 1]: the pose at weight 0 and at weight 1.
        weights: (N, 2): per render, the appearance weight s and the pose weight t, each in [0, 1].

    Returns:
        (N, 3, H, W) in [-1, 1]: render n decodes ``(1 - t) pi_0 + t pi_1`` with
        ``(1 - s) alpha_0 + s alpha_1``; at the corners (s, t in {0, 1}) it is the plain transfer
        of appearance s into pose t.

    Raises:
        ValueError: not two images of each.
    """
    if len(appearance) != 2 or len(pose) != 2:
        raise ValueError(f"an interpolation takes two appearance and two pose images, got "
                         f"{len(appearance)} and {len(pose)}")
    weights = weights.to(appearance.device, torch.float32)[:, :, None, None, None]
    alpha = model.encode_appearance(appearance)
    pi = pose_code(model, pose)
    return render(model, torch.lerp(pi[:1], pi[1:], weights[:, 1]),
                  torch.lerp(alpha[:1], alpha[1:], weights[:, 0]))


def grid_weights(steps: int) -> torch.Tensor:
    """(steps * steps, 2) weights for :func:`interpolate`, row-major: row i has appearance weight
    i / (steps - 1), column j pose weight j / (steps - 1) (the paper's interpolation figure).

    Raises:
        ValueError: fewer than 2 steps.
    """
    if steps < 2:
        raise ValueError(f"an interpolation needs at least 2 steps, got {steps}")
    w = torch.linspace(0, 1, steps)
    return torch.cartesian_prod(w, w)


def walk_weights(frames_per_side: int) -> torch.Tensor:
    """(4 * frames_per_side, 2) weights for :func:`interpolate` on a closed walk around the grid's
    edge: the pose moves from 0 to 1 with the first appearance, then the appearance from 0 to 1,
    then the pose back, then the appearance back. Each side's last frame is the next side's first,
    so it is left out, and a looping animation has no jump.

    Raises:
        ValueError: fewer than 1 frame per side.
    """
    if frames_per_side < 1:
        raise ValueError(f"a walk needs at least 1 frame per side, got {frames_per_side}")
    up = torch.arange(frames_per_side) / frames_per_side
    zeros, ones = torch.zeros_like(up), torch.ones_like(up)
    sides = [(zeros, up), (up, ones), (ones, 1 - up), (1 - up, zeros)]
    return torch.cat([torch.stack(side, dim=1) for side in sides])


# -- the model ----------------------------------------------------------------------------------

class Model:
    """A trained appearance/pose model with the preprocessing of its training data.

    Build it with :func:`load`.

    Args:
        network: an :class:`~rodi.models.networks.AppearancePoseModel` in eval mode.
        config: its run's config; ``model.image_size``, ``data.background`` and ``data.fit``
            prepare inputs.
        batch_size: frames encoded and decoded at once.

    Attributes:
        size: S, the side of the model's square images in pixels.
        device: where the network is.
        config, network, batch_size: as given.
    """

    def __init__(self, network: AppearancePoseModel, config: Config, batch_size: int = 32):
        self.network = network
        self.config = config
        self.size = int(config.model.image_size)
        self.background = tuple(int(v) for v in config.data.background)
        self.fit = config.data.fit
        self.batch_size = batch_size
        self.device = next(network.parameters()).device

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
        if isinstance(x, (str, os.PathLike)):
            return to_tensor(prepare_image(x, self.size, self.background, self.fit))[None]
        if isinstance(x, Image.Image):
            if 0 in x.size:
                raise ValueError(f"an empty image ({x.size[0]} x {x.size[1]} pixels)")
            x = ImageOps.exif_transpose(x)  # as files are read (rodi.data.images.open_image)
            return to_tensor(square_array(to_rgb(x, self.background), self.size, self.background,
                                          self.fit))[None]
        if isinstance(x, np.ndarray):
            if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3 or 0 in x.shape:
                raise ValueError(f"an image array must be (H, W, 3) uint8 with H, W > 0, got "
                                 f"{x.shape} {x.dtype}")
            return self._prepare_one(Image.fromarray(x))
        if isinstance(x, torch.Tensor):
            t = x[None] if x.dim() == 3 else x
            if t.dim() != 4 or t.shape[1] != 3 or not t.is_floating_point() or 0 in t.shape:
                raise ValueError(f"an image tensor must be (B, 3, H, W) or (3, H, W) float with "
                                 f"B, H, W > 0, got {tuple(x.shape)} {x.dtype}")
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
        raise TypeError(f"an image must be a path, a PIL image, a uint8 array or a tensor, not "
                        f"{type(x).__name__}")

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
        """Renders of pose codes with appearance codes, each (B, C, h, w) or (1, C, h, w)
        (broadcast to the other's batch): (B, 3, S, S) in [-1, 1] on the model's device.

        Raises:
            ValueError: batches of different lengths above one, or codes of another shape.
        """
        shape = (self.config.model.code_channels, self.config.model.code_size,
                 self.config.model.code_size)
        for name, code in (("pose", pose), ("appearance", appearance)):
            if code.dim() != 4 or tuple(code.shape[1:]) != shape:
                raise ValueError(f"{name} codes must be (B, {shape[0]}, {shape[1]}, {shape[2]}), "
                                 f"got {tuple(code.shape)}")
        if len(pose) != len(appearance) and 1 not in (len(pose), len(appearance)):
            raise ValueError(f"{len(pose)} pose and {len(appearance)} appearance codes: give equal "
                             "numbers, or one of either")
        return render(self.network, pose.to(self.device), appearance.to(self.device))

    def transfer(self, appearance: ImageLike, pose: ImageLike):
        """The appearance of ``appearance`` in the pose of ``pose``.

        Batches pair up item by item; one side of a single image is broadcast to the other's
        batch.

        Returns:
            One render per pair, in the kind of ``appearance`` (see the module's docstring).

        Raises:
            ImageReadError, TypeError: as :meth:`prepare`.
            ValueError: batches of different lengths above one, or an input :meth:`prepare`
                refuses.
        """
        kind, single = _kind_of(appearance)
        a, p = self.prepare(appearance), self.prepare(pose)
        if len(a) != len(p) and 1 not in (len(a), len(p)):
            raise ValueError(f"{len(a)} appearance and {len(p)} pose images: give equal numbers, "
                             "or one of either")
        single = single and _as_list(pose)[1]
        return self._give(self.decode(self.encode_pose(p), self.encode_appearance(a)), kind, single)

    def interpolate(self, appearance: Sequence[ImageLike], pose: Sequence[ImageLike],
                    steps: int = 7):
        """The paper's interpolation figure: renders between two appearances (down the rows) and
        two poses (across the columns), each code walking linearly; the corners are plain
        transfers.

        Args:
            appearance: two images, the appearance of the first row and of the last.
            pose: two images, the pose of the first column and of the last.
            steps: renders per side, at least 2.

        Returns:
            ``steps`` rows of ``steps`` renders: a list of lists of PIL images or of (S, S, 3)
            uint8 arrays, or for tensors one (steps, steps, 3, S, S) tensor in [-1, 1].

        Raises:
            ValueError: not two images on each side, or fewer than 2 steps.
        """
        kind, _ = _kind_of(appearance)
        a, p = self.prepare(appearance), self.prepare(pose)
        if len(a) != 2 or len(p) != 2:
            raise ValueError(f"interpolate takes two appearance and two pose images, got {len(a)} "
                             f"and {len(p)}")
        cells = self.interpolation(a, p, grid_weights(steps))
        if kind == "tensor":
            return cells.cpu().reshape(steps, steps, 3, self.size, self.size)
        flat = self._give(cells, kind, single=False)
        return [flat[i * steps:(i + 1) * steps] for i in range(steps)]

    def examples(self, n: int = 4,
                 data_root: str | os.PathLike | None = None) -> tuple[list, list]:
        """``n`` appearance and ``n`` pose images from the model's own data (held-out identities
        where it has them; for ``humanoid``, mocap renders, made in seconds on first use): two
        lists of (S, S) PIL images.

        Args:
            data_root: where that data is on this machine, if not at the run's ``data.root``.

        Raises:
            SpritesDataError, MocapDataError, FlareDataError, PairDataError: the data cannot be
                opened here.
        """
        data = (self.config.data if data_root is None
                else replace(self.config.data, root=str(data_root)))
        source = open_source(data, self.size, progress=False)
        try:
            appearance, pose = source.fixed_examples(n, split="test")
        except DataError:  # user data with nothing held out
            appearance, pose = source.fixed_examples(n, split="train")
        return (self._give(appearance["image"], "pil", False),
                self._give(pose["image"], "pil", False))

    def frames(self, path: str | os.PathLike) -> Iterator[np.ndarray]:
        """A video's frames as the model sees them, in order: (S, S, 3) uint8 each. A folder is a
        video of its images in file-name order (as ``rodi data tracks`` and FOMM's data sets
        store clips).

        Raises:
            VideoReadError: the file is missing or not a readable video.
            ImageReadError: an image of a folder is unreadable, or the folder holds none.
        """
        if Path(path).is_dir():
            return (prepare_image(f, self.size, self.background, self.fit)
                    for f in expand_image_paths([path]))
        return video_frames(path, self.size, self.background, self.fit)

    def check_video(self, path: str | os.PathLike, max_frames: int | None = None) -> VideoInfo:
        """Probe a video (see :func:`~rodi.data.video.probe_video`) and enforce ``max_frames``.

        A folder of images is a video of them in file-name order, with no frame rate (its
        width and height given as the model's image size).

        Raises:
            VideoReadError: missing, unreadable, no video stream or no frames.
            StillImageError: a still image (PNG, JPEG, ...), whatever its name says.
            ImageReadError: a folder without images.
            InputLimitError: more than ``max_frames`` frames.
        """
        if Path(path).is_dir():
            info = VideoInfo(len(expand_image_paths([path])), None, self.size, self.size)
        else:
            info = probe_video(path)
        if max_frames is not None and info.frames > max_frames:
            rate = f" ({float(info.frames / info.rate):.1f} s)" if info.rate else ""
            raise InputLimitError(path, f"{info.frames} frames{rate}; at most {max_frames} frames "
                                        "are allowed here")
        return info

    def appearance_code(self, path: str | os.PathLike, max_frames: int | None = None
                   ) -> tuple[torch.Tensor, np.ndarray]:
        """The appearance code of an image, or the mean code of a video's frames (a video is
        recognised by its suffix, see :data:`~rodi.data.video.VIDEO_SUFFIXES`).

        Returns:
            The code (1, C, h, w), and the frames it came from, (K, S, S, 3) uint8 (K = 1 for an
            image).

        Raises:
            ImageReadError: an image file that is missing or unreadable.
            VideoReadError: a video file that is missing, unreadable or without frames.
            InputLimitError: a video longer than ``max_frames``.
        """
        if is_video(path) or Path(path).is_dir():
            self.check_video(path, max_frames)
            frames = np.stack(list(self.frames(path)))
        else:
            frames = prepare_image(path, self.size, self.background, self.fit)[None]
        batches = (to_tensor(frames[i:i + self.batch_size]).to(self.device)
                   for i in range(0, len(frames), self.batch_size))
        return mean_appearance_code(self.network, batches), frames

    def retarget_frames(self, code: torch.Tensor, pose_video: str | os.PathLike,
                        side_by_side_with: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Render appearance ``code`` (1, C, h, w) in the pose of each frame of ``pose_video``, in
        batches of up to ``batch_size`` frames: (B, S, S, 3) uint8 each, or (B, S, 3 S, 3) with
        ``side_by_side_with``, a (K, S, S, 3) uint8 appearance input shown between the pose frame
        and the render (frame i beside pose frame i mod K).

        Raises:
            VideoReadError: the pose video is missing or unreadable, or decoding fails part way.
        """
        done = 0
        for batch in _batches(self.frames(pose_video), self.batch_size):
            poses = np.stack(batch)
            out = to_uint8(render(self.network,
                                  pose_code(self.network, to_tensor(poses).to(self.device)), code))
            if side_by_side_with is not None:
                shown = side_by_side_with[np.arange(done, done + len(batch))
                                          % len(side_by_side_with)]
                out = np.concatenate([poses, shown, out], axis=2)
            done += len(batch)
            yield out

    def retarget(self, appearance: str | os.PathLike, pose_video: str | os.PathLike,
                 output: str | os.PathLike, side_by_side: bool = False, scale: int = 4,
                 progress: bool = False, max_frames: int | None = None,
                 rate: float | None = None) -> RetargetResult:
        """Motion retargeting (``rodi retarget``): render ``appearance`` (an image, or a video
        whose frames' appearance codes are averaged) in the pose of every frame of ``pose_video``,
        and write the renders as a video at the pose video's frame rate: .mp4, .mov or .mkv in
        H.264, or .gif (see :func:`~rodi.media.video_writer`).

        Args:
            side_by_side: each output frame shows the pose frame, the appearance input (a video's
                frames in turn) and the render, as the model sees them: three times as wide.
            scale: each pixel of the output becomes ``scale`` x ``scale`` pixels (4, as
                ``rodi retarget``).
            progress: show a progress bar over the frames.
            max_frames: refuse videos with more frames.
            rate: frames per second of the output; None: the pose video's (a folder of frames
                has none: give it here, else 25 is written with a warning).

        Warns:
            VideoWarning: a video decodes to fewer frames than its container declares (it may be
                cut; what decodes is used), or the pose video gives no frame rate (25 is used).

        Raises:
            ImageReadError, VideoReadError: an input is missing or unreadable, or the pose video
                has no frames.
            StillImageError: the pose video (or an appearance "video") is a still image.
            InputLimitError: a video has more than ``max_frames`` frames.
            VideoWriteError: the output suffix is not supported, H.264 is not available, or the
                output is one of the inputs.
        """
        check_video_output(output)
        if any(Path(output).resolve() == Path(p).resolve() for p in (appearance, pose_video)):
            raise VideoWriteError(f"{output}: is also an input; write the result to another file")
        info = self.check_video(pose_video, max_frames)
        code, app_frames = self.appearance_code(appearance, max_frames)
        rate = Fraction(rate).limit_denominator(1001) if rate is not None else info.rate
        if rate is None:
            warnings.warn(f"{pose_video} does not give its frame rate; writing {FALLBACK_RATE} "
                          "frames per second", VideoWarning, stacklevel=2)
            rate = FALLBACK_RATE
        written = 0
        bar = tqdm(total=info.frames, unit="frame", desc="retargeting", disable=not progress)
        with bar, video_writer(output, rate, scale) as write:
            for frames in self.retarget_frames(code, pose_video,
                                               app_frames if side_by_side else None):
                write(frames)
                written += len(frames)
                bar.update(len(frames))
        return RetargetResult(Path(output), written, rate, len(app_frames))

    def interpolation(self, appearance: torch.Tensor, pose: torch.Tensor,
                      weights: torch.Tensor) -> torch.Tensor:
        """:func:`interpolate` in batches: (N, 3, S, S) in [-1, 1] for (N, 2) ``weights``."""
        return torch.cat([interpolate(self.network, appearance.to(self.device),
                                      pose.to(self.device), w)
                          for w in weights.split(self.batch_size)])

    def save_interpolation_grid(self, appearance: torch.Tensor, pose: torch.Tensor,
                                output: str | os.PathLike, steps: int = 7, scale: int = 1) -> Path:
        """Write the paper's interpolation figure as a PNG: ``steps`` x ``steps`` renders, the
        appearance walking from ``appearance[0]`` (top) to ``appearance[1]`` (bottom) and the pose
        from ``pose[0]`` (left) to ``pose[1]`` (right), the inputs as headers (see
        :func:`rodi.viz.interpolation_grid`). ``appearance`` and ``pose`` are (2, 3, S, S) in
        [-1, 1].

        Raises:
            ValueError: fewer than 2 steps.
        """
        cells = (self.interpolation(appearance, pose, grid_weights(steps))
                 .reshape(steps, steps, 3, self.size, self.size))
        return save_png(interpolation_grid(appearance, pose, cells), output, scale)

    def save_walk(self, appearance: torch.Tensor, pose: torch.Tensor, output: str | os.PathLike,
                  frames_per_side: int = 12, rate: float = 12, scale: int = 1) -> Path:
        """Write the closed walk of :func:`walk_weights` as a GIF or video (see
        :func:`~rodi.media.video_writer`) at ``rate`` frames per second.

        Raises:
            ValueError: fewer than 1 frame per side.
            VideoWriteError: the output suffix is not supported or H.264 is not available.
        """
        check_video_output(output)
        renders = self.interpolation(appearance, pose, walk_weights(frames_per_side))
        with video_writer(output, rate, scale) as write:
            write(to_uint8(renders))
        return Path(output)


def _as_list(images) -> tuple[list, bool]:
    """Inputs as a list of single images (tensors stay batched), and whether one image was
    given."""
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


def load(name_or_path: str | os.PathLike = "humanoid",
         device: str | torch.device = "auto") -> Model:
    """A trained model: a shipped model's name (``humanoid``, see
    :func:`pretrained_names`), a ``.safetensors`` export or a training checkpoint
    (``.pt``). ``device``: ``auto`` (CUDA when present, else the CPU, as in training), ``cpu``,
    ``cuda``, ``cuda:N`` or a ``torch.device``.

    Returns:
        A :class:`Model` in eval mode (float32) on that device.

    Raises:
        CheckpointError: no such file or shipped model, or a file that is not a rodi model.
        ConfigError: an unknown device name, or CUDA asked for where there is none.
    """
    if not isinstance(device, torch.device):
        device = resolve_device(str(device))
    network, config = load_model(name_or_path, device)
    return Model(network, config)

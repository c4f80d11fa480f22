"""Using a trained model on files: transfers, motion retargeting to video, and interpolation in code
space (ICCV 2019, Esser et al.: the transfers, interpolations and videos the paper shows; docs/method.md
section 1).

:class:`Renderer` holds a model and the preprocessing of its training data (image size, background,
square fit), so a file is prepared exactly as the model saw its training images; ``rodi transfer``,
``rodi retarget``, ``rodi interpolate`` and ``rodi serve`` all go through it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from rodi.data.images import load_image, prepare_image, to_tensor
from rodi.data.video import VideoInfo, VideoReadError, VideoWarning, is_video, probe_video, video_frames
from rodi.media import VideoWriteError, check_video_output, video_writer
from rodi.viz import interpolation_grid, save_png, to_uint8

FALLBACK_RATE = Fraction(25)


class InputLimitError(VideoReadError):
    """A video is longer than the caller allows (``rodi serve``'s limit); ``path`` and ``reason``
    as for :class:`~rodi.data.video.VideoReadError`, so it is refused the same way."""


@dataclass(frozen=True)
class RetargetResult:
    """What :meth:`Renderer.retarget` wrote.

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
    (B, 3, H, W) clamped to [-1, 1] from pose and appearance codes, each (B, C, h, w) or (1, C, h, w)
    (broadcast to the other's batch)."""
    b = max(len(pose_code), len(appearance_code))
    return model.decode(pose_code.expand(b, -1, -1, -1), appearance_code.expand(b, -1, -1, -1)).clamp(-1, 1)


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
def interpolate(model, appearance: torch.Tensor, pose: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Renders between two appearance codes and two pose codes (the posterior means).

    Args:
        appearance: (2, 3, H, W) pixels in [-1, 1]: the appearance at weight 0 and at weight 1.
        pose: (2, 3, H, W) pixels in [-1, 1]: the pose at weight 0 and at weight 1.
        weights: (N, 2): per render, the appearance weight s and the pose weight t, each in [0, 1].

    Returns:
        (N, 3, H, W) in [-1, 1]: render n decodes ``(1 - t) pi_0 + t pi_1`` with
        ``(1 - s) alpha_0 + s alpha_1``; at the corners (s, t in {0, 1}) it is the plain transfer of
        appearance s into pose t.

    Raises:
        ValueError: not two images of each.
    """
    if len(appearance) != 2 or len(pose) != 2:
        raise ValueError(f"an interpolation takes two appearance and two pose images, got "
                         f"{len(appearance)} and {len(pose)}")
    weights = weights.to(appearance.device, torch.float32)[:, :, None, None, None]
    alpha = model.encode_appearance(appearance)
    pi = pose_code(model, pose)
    return render(model, torch.lerp(pi[:1], pi[1:], weights[:, 1]), torch.lerp(alpha[:1], alpha[1:], weights[:, 0]))


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


class Renderer:
    """A trained model with the preprocessing of its training data.

    Args:
        model: an :class:`~rodi.models.networks.AppearancePoseModel` in eval mode.
        cfg: its config; ``model.image_size``, ``data.background`` and ``data.fit`` prepare inputs.
        batch_size: frames encoded and decoded at once.

    Attributes:
        size: S, the side of the model's square images.
        device: where the model is.
    """

    def __init__(self, model, cfg, batch_size: int = 32):
        self.model = model
        self.cfg = cfg
        self.size = int(cfg.model.image_size)
        self.background = tuple(int(v) for v in cfg.data.background)
        self.fit = cfg.data.fit
        self.batch_size = batch_size
        self.device = next(model.parameters()).device

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: torch.device | None = None) -> "Renderer":
        """Load a training checkpoint (.pt), an export (.safetensors) or a shipped model by name
        (``humanoid``) with :func:`~rodi.training.state.load_model`.

        Raises:
            CheckpointError: the file cannot be read as a rodi model.
        """
        from rodi.training.state import load_model

        model, cfg = load_model(path, device)
        return cls(model, cfg)

    def images(self, paths: Iterable[str | os.PathLike]) -> torch.Tensor:
        """Image files as the model sees them: (N, 3, S, S) in [-1, 1] on the model's device.

        Raises:
            ImageReadError: a file is missing or not a readable image.
        """
        return torch.stack([load_image(p, self.size, self.background, self.fit) for p in paths]).to(self.device)

    def frames(self, path: str | os.PathLike) -> Iterator[np.ndarray]:
        """A video's frames as the model sees them, in order: (S, S, 3) uint8 each.

        Raises:
            VideoReadError: the file is missing or not a readable video.
        """
        return video_frames(path, self.size, self.background, self.fit)

    def check_video(self, path: str | os.PathLike, max_frames: int | None = None) -> VideoInfo:
        """Probe a video (see :func:`~rodi.data.video.probe_video`) and enforce ``max_frames``.

        Raises:
            VideoReadError: missing, unreadable, no video stream or no frames.
            StillImageError: a still image (PNG, JPEG, ...), whatever its name says.
            InputLimitError: more than ``max_frames`` frames.
        """
        info = probe_video(path)
        if max_frames is not None and info.frames > max_frames:
            rate = f" ({float(info.frames / info.rate):.1f} s)" if info.rate else ""
            raise InputLimitError(path, f"{info.frames} frames{rate}; at most {max_frames} frames are allowed here")
        return info

    def appearance(self, path: str | os.PathLike, max_frames: int | None = None
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
        if is_video(path):
            self.check_video(path, max_frames)
            frames = np.stack(list(self.frames(path)))
        else:
            frames = prepare_image(path, self.size, self.background, self.fit)[None]
        batches = (to_tensor(frames[i:i + self.batch_size]).to(self.device)
                   for i in range(0, len(frames), self.batch_size))
        return mean_appearance_code(self.model, batches), frames

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
            out = to_uint8(render(self.model, pose_code(self.model, to_tensor(poses).to(self.device)), code))
            if side_by_side_with is not None:
                shown = side_by_side_with[np.arange(done, done + len(batch)) % len(side_by_side_with)]
                out = np.concatenate([poses, shown, out], axis=2)
            done += len(batch)
            yield out

    def retarget(self, appearance: str | os.PathLike, pose_video: str | os.PathLike, output: str | os.PathLike,
                 side_by_side: bool = False, scale: int = 1, progress: bool = True,
                 max_frames: int | None = None) -> RetargetResult:
        """Motion retargeting: render ``appearance`` (an image, or a video whose frames' appearance
        codes are averaged) in the pose of every frame of ``pose_video``, and write the renders as a
        video at the pose video's frame rate (see :func:`~rodi.media.video_writer` for the formats).

        Args:
            side_by_side: each output frame shows the pose frame, the appearance input (a video's
                frames in turn) and the render, as the model sees them: three times as wide.
            scale: each pixel of the output becomes ``scale`` x ``scale`` pixels.
            progress: show a progress bar over the frames.
            max_frames: refuse videos with more frames.

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
        code, app_frames = self.appearance(appearance, max_frames)
        rate = info.rate
        if rate is None:
            warnings.warn(f"{pose_video} does not give its frame rate; writing {FALLBACK_RATE} frames per second",
                          VideoWarning, stacklevel=2)
            rate = FALLBACK_RATE
        written = 0
        bar = tqdm(total=info.frames, unit="frame", desc="retargeting", disable=not progress)
        with bar, video_writer(output, rate, scale) as write:
            for frames in self.retarget_frames(code, pose_video, app_frames if side_by_side else None):
                write(frames)
                written += len(frames)
                bar.update(len(frames))
        return RetargetResult(Path(output), written, rate, len(app_frames))

    def interpolation(self, appearance: torch.Tensor, pose: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """:func:`interpolate` in batches: (N, 3, S, S) in [-1, 1] for (N, 2) ``weights``."""
        return torch.cat([interpolate(self.model, appearance.to(self.device), pose.to(self.device), w)
                          for w in weights.split(self.batch_size)])

    def save_interpolation_grid(self, appearance: torch.Tensor, pose: torch.Tensor, output: str | os.PathLike,
                                steps: int = 7, scale: int = 1) -> Path:
        """Write the paper's interpolation figure as a PNG: ``steps`` x ``steps`` renders, the
        appearance walking from ``appearance[0]`` (top) to ``appearance[1]`` (bottom) and the pose
        from ``pose[0]`` (left) to ``pose[1]`` (right), the inputs as headers (see
        :func:`rodi.viz.interpolation_grid`). ``appearance`` and ``pose`` are (2, 3, S, S) in [-1, 1].

        Raises:
            ValueError: fewer than 2 steps.
        """
        cells = self.interpolation(appearance, pose, grid_weights(steps)).reshape(steps, steps, 3, self.size, self.size)
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

"""Writing rendered frames as a video (H.264 in MP4, MOV or MKV, with PyAV) or an animated GIF
(with Pillow), atomically: a failed or interrupted write leaves no partial file at the output path.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np
from PIL import Image

from rodi.atomic import replacing

CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
VIDEO_OUTPUT_SUFFIXES = (*CONTAINERS, ".gif")
# libx264 first: better quality per bit; libopenh264 is what LGPL-only FFmpeg builds carry.
H264_ENCODERS = ("libx264", "libopenh264")
_ENCODER_OPTIONS = {"libx264": {"crf": "18"}, "libopenh264": {}}


class VideoWriteError(RuntimeError):
    """A video cannot be written: an output suffix rodi does not write, no H.264 encoder in this
    FFmpeg build, or no frames."""


def h264_encoder() -> str:
    """The name of the first H.264 encoder PyAV's FFmpeg build offers (see :data:`H264_ENCODERS`).

    Raises:
        VideoWriteError: the build has none.
    """
    for name in H264_ENCODERS:
        if name in av.codecs_available:
            return name
    raise VideoWriteError(f"this PyAV build (FFmpeg {av.ffmpeg_version_info}) cannot encode "
                          f"H.264 (no {' or '.join(H264_ENCODERS)}); write a .gif instead, or "
                          "install a PyAV wheel built with libx264")


def check_video_output(path: str | os.PathLike) -> None:
    """Refuse an output path rodi cannot write before any work is done.

    Raises:
        VideoWriteError: the suffix is not one of :data:`VIDEO_OUTPUT_SUFFIXES`, or it needs H.264
            and no encoder is available.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_OUTPUT_SUFFIXES:
        raise VideoWriteError(f"{path}: cannot write {suffix or 'a file without a suffix'}; "
                              f"use one of {', '.join(VIDEO_OUTPUT_SUFFIXES)}")
    if suffix in CONTAINERS:
        h264_encoder()


@contextmanager
def video_writer(path: str | os.PathLike, rate: Fraction | float, scale: int = 1
                 ) -> Iterator[Callable[[np.ndarray], None]]:
    """Open ``path`` for frames at a constant ``rate`` (frames per second) and yield ``write``,
    which appends (N, H, W, 3) uint8 RGB frames, all of one size, in order.

    The format follows the suffix: ``.mp4``, ``.mov`` and ``.mkv`` hold H.264 in yuv420p (which
    players and browsers expect; H and W times ``scale`` must then be even), ``.gif`` an animation
    that loops (frame times are rounded to GIF's 10 ms). The file appears at ``path`` only when the
    block ends without an error.

    Args:
        scale: each pixel becomes ``scale`` x ``scale`` pixels (nearest neighbour), so that small
            renders are not blurred by a player's upscaling.

    Raises:
        VideoWriteError: see :func:`check_video_output`; or no frame was written.
    """
    check_video_output(path)
    path = Path(path)
    suffix = path.suffix.lower()
    frames: list[np.ndarray] = []
    with replacing(path) as tmp:
        container = None if suffix == ".gif" else av.open(str(tmp), "w", format=CONTAINERS[suffix])
        stream = None

        def write(batch: np.ndarray) -> None:
            nonlocal stream
            if scale > 1:
                batch = batch.repeat(scale, axis=1).repeat(scale, axis=2)
            if container is None:
                frames.extend(batch)
                return
            if stream is None:
                encoder = h264_encoder()
                stream = container.add_stream(encoder, rate=Fraction(rate),
                                              options=_ENCODER_OPTIONS[encoder])
                stream.height, stream.width = batch.shape[1:3]
                stream.pix_fmt = "yuv420p"
            for frame in batch:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame),
                                                                       format="rgb24")))

        try:
            yield write
            if stream is None and not frames:
                raise VideoWriteError(f"{path}: no frames to write")
            if container is not None:
                container.mux(stream.encode())
        finally:
            if container is not None:
                container.close()
        if frames:
            first, *rest = [Image.fromarray(f) for f in frames]
            first.save(tmp, format="GIF", save_all=True, append_images=rest, loop=0,
                       duration=round(1000 / float(rate)))

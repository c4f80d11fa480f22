"""Reading videos with PyAV: frame counts, frame rates and frames prepared as the model sees images.

The ``videos`` training source and ``rodi retarget`` share these steps, so a video frame is
prepared the same way whether the model learns from it or is asked to transfer it (rotation by the
display matrix, then the square fit and resize of :func:`rodi.data.images.square_array`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from PIL import Image

from rodi.data.images import MediaReadError, square_array

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".webm", ".mkv")


class VideoReadError(MediaReadError):
    """A video file is missing, unreadable, has no video stream or no frames (``path``,
    ``reason``)."""


class StillImageError(VideoReadError):
    """A still image (PNG, JPEG, a single-frame GIF, ...) where a video is needed."""


class VideoWarning(UserWarning):
    """A video can be used, but not entirely as it claims: fewer frames decode than its container
    declares (it may be cut), or it gives no frame rate."""


# FFmpeg demuxers of single images (``png_pipe``, ``jpeg_pipe``, ...: all named ``*_pipe``), and
# those of formats that are stills when they hold one frame.
_IMAGE_DEMUXERS = ("image2", "image2pipe")
_ANIMATED_IMAGE_DEMUXERS = ("gif", "apng")


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, read from its packets without decoding them.

    Attributes:
        frames: frames in the time window.
        rate: frames per second (the stream's average rate), or None where the file does not say.
        width, height: of the stored frames, before any rotation.
        declared: frames of the whole stream as its container declares them, or None where it
            does not (fragmented MP4, Matroska, WebM).
    """

    frames: int
    rate: Fraction | None
    width: int
    height: int
    declared: int | None = None


def is_video(path: str | os.PathLike) -> bool:
    """Whether the file name ends in one of :data:`VIDEO_SUFFIXES` (any case)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _ffmpeg_reason(err: Exception) -> str:
    """FFmpeg's message without the file name it repeats."""
    return getattr(err, "strerror", None) or str(err)


def _still_image(path: Path, kind: str) -> StillImageError:
    return StillImageError(path, f"a still image ({kind}), not a video; a video is needed here")


def _image_kind(container) -> str | None:
    """What still-image format FFmpeg opened the file as ("PNG", "JPEG", ...), or None for a
    video (or an animation) format."""
    name = container.format.name
    if not (name.endswith("_pipe") or name in _IMAGE_DEMUXERS):
        return None
    kind = (name.removesuffix("_pipe") if name.endswith("_pipe")
            else container.streams.video[0].codec_context.name)
    return {"mjpeg": "JPEG"}.get(kind, kind.upper())


def _open(path: Path):
    """Open a video with PyAV: the container, whose first video stream is the video.

    Raises:
        VideoReadError: the file is missing, unreadable or has no video stream.
        StillImageError: FFmpeg opens it as a still image (PNG, JPEG, WebP, ...), whatever its name.
    """
    if not path.is_file():
        raise VideoReadError(path, "no such file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoReadError(path, f"not a readable video ({_ffmpeg_reason(err)})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "no video stream")
    kind = _image_kind(container)
    if kind is not None:
        container.close()
        raise _still_image(path, kind)
    return container


def _seconds(pts: int | None, stream) -> float | None:
    if pts is None or stream.time_base is None:
        return None
    return float((pts - (stream.start_time or 0)) * stream.time_base)


def _in_window(t: float | None, window: tuple[float, float | None] | None) -> bool:
    if window is None or t is None:
        return True
    start, end = window
    return t >= start and (end is None or t < end)


def probe_video(path: str | os.PathLike,
                time_window: tuple[float, float | None] | None = None) -> VideoInfo:
    """Count the frames of the first video stream (those shown at ``start_s <= t < end_s`` seconds
    when ``time_window`` is given) from its packets, and read its frame rate and size.

    Raises:
        VideoReadError: the file is missing, unreadable, has no video stream, or no frames (in the
            window).
        StillImageError: the file is a still image (see :func:`_open`), or a GIF or APNG of
            one frame.
    """
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        width, height = stream.codec_context.width, stream.codec_context.height
        declared = stream.frames or None
        packets = 0
        n = 0
        try:
            for packet in container.demux(stream):
                if packet.size:
                    packets += 1
                    n += _in_window(_seconds(packet.pts, stream), time_window)
        except av.FFmpegError as err:
            raise VideoReadError(path, f"not a readable video ({_ffmpeg_reason(err)})") from None
        if packets == 1 and container.format.name in _ANIMATED_IMAGE_DEMUXERS:
            raise _still_image(path, container.format.name.upper())
    if n == 0:
        raise VideoReadError(path, "no frames" + ("" if time_window is None
                                                  else f" in {time_window} s"))
    return VideoInfo(n, Fraction(rate) if rate else None, width, height, declared)


def warn_if_cut(path: str | os.PathLike, declared: int | None, decoded: int) -> None:
    """Warn (:class:`VideoWarning`) when fewer frames decoded than the container declares: the
    file may have been cut short (an interrupted download or copy)."""
    if declared and decoded < declared:
        warnings.warn(f"{path} declares {declared} frames but only {decoded} decode; the video "
                      "may be cut", VideoWarning, stacklevel=2)


_QUARTER_TURNS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
                  270: Image.Transpose.ROTATE_270}


def _upright(im: Image.Image, rotation: int) -> Image.Image:
    """A decoded frame turned as the video's display matrix asks (portrait phone videos)."""
    turn = _QUARTER_TURNS.get(rotation % 360)
    return im if turn is None else im.transpose(turn)


def frame_array(frame, size: int, background: tuple[int, int, int] = (0, 0, 0),
                fit: str = "pad") -> np.ndarray:
    """A decoded PyAV frame as the model sees images: (size, size, 3) uint8 RGB.

    FFmpeg first scales it to about twice the final size (fast), then it is rotated as the video's
    display matrix asks (portrait phone videos), fitted and resized exactly as images are.
    """
    w, h = frame.width, frame.height
    scale = 2 * size / (max(w, h) if fit == "pad" else min(w, h))
    if scale < 1:
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    im = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_image()
    return square_array(_upright(im, frame.rotation), size, background, fit)


def _decode(container, stream) -> Iterator:
    """The decoded frames of ``stream``, in order, as ``container.decode(stream)`` gives them,
    except that a packet the demuxer flags as corrupt (the last one of a file that was cut, read
    short) and that then fails to decode is dropped, so a cut video gives the frames before the cut.

    Raises:
        av.FFmpegError: any other packet fails to decode.
    """
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.FFmpegError:
            if packet.is_corrupt:
                continue
            raise
        yield from frames


def _frames_in_window(path: Path, time_window: tuple[float, float | None] | None
                      ) -> Iterator[tuple[int, float | None, object]]:
    """``(k, t, frame)`` for the decoded PyAV frames shown at ``start_s <= t < end_s`` seconds
    (all where ``time_window`` is None), in order: ``k`` counts them from 0, ``t`` is the frame's
    time in seconds from the start (None where the file gives no time stamp).

    Warns and raises as :func:`video_frames` says.
    """
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = stream.frames or None
        end = None if time_window is None else time_window[1]
        in_window = 0
        try:
            for frame in _decode(container, stream):
                t = _seconds(frame.pts, stream)
                if end is not None and t is not None and t >= end:
                    break
                if not _in_window(t, time_window):
                    continue
                yield in_window, t, frame
                in_window += 1
        except (av.FFmpegError, ValueError) as err:
            raise VideoReadError(path, f"decoding failed ({_ffmpeg_reason(err)})") from None
    if time_window is None:
        warn_if_cut(path, declared, in_window)


def video_frames(path: str | os.PathLike, size: int, background: tuple[int, int, int] = (0, 0, 0),
                 fit: str = "pad", stride: int = 1,
                 time_window: tuple[float, float | None] | None = None) -> Iterator[np.ndarray]:
    """Decode a video's frames in order, each prepared by :func:`frame_array`: (size, size, 3)
    uint8.

    Args:
        stride: keep every ``stride``-th frame (of those in the time window).
        time_window: ``(start_s, end_s)``: keep frames shown at ``start_s <= t < end_s`` seconds
            from the start; ``end_s`` may be None for the end. None keeps all.

    Warns:
        VideoWarning: once all frames are decoded (with no ``time_window``), if fewer decoded than
            the container declares (see :func:`warn_if_cut`).

    Raises:
        VideoReadError: the file cannot be opened, or decoding fails part way (after the frames
            decoded until then have been yielded).
        StillImageError: the file is a still image (see :func:`_open`).
    """
    for k, _, frame in _frames_in_window(Path(path), time_window):
        if k % stride == 0:
            yield frame_array(frame, size, background, fit)


@dataclass(frozen=True)
class Frame:
    """One decoded frame at its full resolution.

    Attributes:
        index: its position in the video, from 0.
        time: seconds from the start of the video (``index / rate`` where the file gives no time
            stamp, ``index`` where it gives no rate either).
        pixels: (H, W, 3) uint8 RGB, turned upright as the display matrix asks.
    """

    index: int
    time: float
    pixels: np.ndarray


def full_frames(path: str | os.PathLike) -> Iterator[Frame]:
    """Decode every frame of a video, in order, at its stored resolution (turned upright), for
    work that needs the whole picture (finding people in it: :mod:`rodi.data.tracks`).

    Warns and raises as :func:`video_frames` does.
    """
    path = Path(path)
    rate = None
    for k, t, frame in _frames_in_window(path, None):
        if t is None:  # rare: read the rate from the packets only then
            rate = rate or probe_video(path).rate or 1
            t = k / float(rate)
        pixels = np.asarray(_upright(frame.to_image(), frame.rotation))
        yield Frame(k, t, pixels)

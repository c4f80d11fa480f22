"""``rodi data tracks``: raw footage of people cut into an identity folder that the ``folder``
source reads: one sub-folder of square crops per tracked person, a manifest of every crop, an index
with held-out splits for the ``index`` source, and a contact sheet.

The steps, one piece each, in the order a frame meets them:

1. frames: :func:`rodi.data.video.full_frames` (PyAV, as every reader in rodi), full resolution;
2. shot cuts: :class:`CutDetector`, a large change of the colour histogram between consecutive
   frames; a cut (and the start of every video) ends every track and restarts the detector;
3. people: a :class:`PersonDetector`, :class:`BackgroundDetector` (OpenCV's MOG2 background
   subtraction: moving blobs of a static camera; the default) or :class:`HogDetector` (OpenCV's
   HOG people detector, whose weights ship inside OpenCV);
4. tracks: :class:`Linker`, norfair's tracker (a Kalman filter on the box corners, detections
   matched by IoU, with a gate on the change of size, :func:`box_distance`), from the maintained
   fork ``norfair-enough`` (BSD-3-Clause) because the original ``norfair`` 2.3 pins numpy below
   2, which would downgrade rodi's numpy. Both install the import package ``norfair``: have one
   of them, not both;
5. crops: :func:`square_crop`, a square around the box with a margin, the scene beside the box
   (other people) and past the frame's edges filled with a plain colour (``fit="pad"``);
6. clean tracks: detections of an odd size left out (:func:`without_size_outliers`), tracks cut
   where the colours in their box change (:func:`split_by_colour`: the tracker went from one
   person to another), their ends trimmed (``TrackSettings.trim_s``);
7. keep (``short``, ``small``, ``wide`` and ``still`` tracks are dropped:
   :meth:`Track.why_dropped`), name, split (:func:`assign_splits`) and write: :func:`cut_tracks`.

Steps 6 and 7 exist because of what the first five gave on the pedestrian video ``vtest.avi`` of
Debian's ``opencv-doc`` (768 x 576, 795 frames at 10 fps), looked at crop by crop:
``docs/results/tracks/README.md`` has the measurements, the comparison of the two detectors and
the contact sheet.

OpenCV and norfair are the optional extra ``rodi[tracks]``, imported only when a command needs them
(:func:`require_extra`), so the rest of rodi works without them.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from rodi.atomic import new_folder, replacing
from rodi.config import TRACK_FITS, TrackSettings
from rodi.data.errors import DataError
from rodi.data.folders import SPLITS
from rodi.data.inspect import contact_sheet
from rodi.data.video import Frame, full_frames, probe_video

EXTRA = "pip install 'rodi[tracks]'"
MANIFEST_COLUMNS = ("identity", "split", "video", "frame", "time_s", "x0", "y0", "x1", "y1")


class TracksError(DataError):
    """Footage cannot give an identity folder: the extra is missing, nobody is found in it, every
    track is dropped, or the output folder is taken."""


def require_extra():
    """OpenCV and norfair, the optional extra ``rodi[tracks]``: ``(cv2, norfair)``.

    Raises:
        TracksError: either is not installed (one line saying ``pip install 'rodi[tracks]'``).
    """
    try:
        import cv2  # the optional extra: imported only where footage is tracked
        import norfair
    except ImportError as err:
        raise TracksError(f"tracking people needs OpenCV and norfair ({err.name} is not "
                          f"installed): {EXTRA}") from None
    return cv2, norfair


# -- shot cuts -------------------------------------------------------------------------------------

def colour_histogram(pixels: np.ndarray, bins: int = 8, step: int = 4) -> np.ndarray:
    """The joint RGB histogram of a picture, ``bins`` levels per channel, of every ``step``-th
    pixel in both directions: (bins ** 3,) float64 summing to 1 (all 0 for no pixels).

    Args:
        pixels: (H, W, 3) uint8 RGB.
    """
    levels = pixels[::step, ::step].reshape(-1, 3).astype(np.int64) * bins // 256
    cells = (levels[:, 0] * bins + levels[:, 1]) * bins + levels[:, 2]
    return np.bincount(cells, minlength=bins ** 3) / max(len(cells), 1)


def colour_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between two histograms: the share of the mass that differs, 0-1."""
    return float(0.5 * np.abs(a - b).sum())


def box_colours(pixels: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The colours of the person in a box: :func:`colour_histogram` (4 levels per channel, every
    pixel) of its middle half across and 80% down, where the person is and the background is
    not: (64,) float64."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    region = pixels[max(0, round(y0 + 0.1 * h)):round(y1 - 0.1 * h),
                    max(0, round(x0 + 0.25 * w)):round(x1 - 0.25 * w)]
    return colour_histogram(region, bins=4, step=1)


class CutDetector:
    """Says which frames start a new shot: those whose colour histogram (:func:`colour_histogram`)
    differs from the previous frame's by more than ``threshold`` in total variation distance
    (half the L1 distance: the share of pixels that would have to change colour bin, 0-1).

    Within a shot, people walking and the camera's noise move a few hundredths of the mass (at
    most 0.03 between consecutive frames of ``vtest.avi``); a cut to another scene moves most of
    it.
    """

    def __init__(self, threshold: float = TrackSettings.cut_threshold):
        self.threshold = threshold
        self._last: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the previous frame (a new video starts)."""
        self._last = None

    def __call__(self, pixels: np.ndarray) -> bool:
        """Whether the frame (H, W, 3) uint8 RGB starts a new shot; the first frame after
        :meth:`reset` does not."""
        histogram = colour_histogram(pixels)
        last, self._last = self._last, histogram
        return last is not None and colour_distance(histogram, last) > self.threshold


# -- people ----------------------------------------------------------------------------------------

class PersonDetector(Protocol):
    """What finds people in a frame."""

    def reset(self) -> None:
        """Start afresh: a new shot or video begins."""

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Boxes of the people in a frame, (N, 4) float64 ``x0, y0, x1, y1`` in pixels (x0 < x1,
        y0 < y1), from (H, W, 3) uint8 RGB."""


class BackgroundDetector:
    """People as the moving blobs of a static camera: OpenCV's MOG2 background model, its shadows
    left out, the mask opened (noise) and closed with a tall kernel (a head, torso and legs whose
    colours the background shares in places become one blob), each blob's bounding box.

    A blob shorter than half of ``min_height`` or wider than it is high (a group, a car) is
    ignored. The model learns from the first frame after :meth:`reset` on, quickly for the
    ``warmup`` frames (which give no detections), then at ``1 / history`` a frame, so that a person
    who stands still a while is not learnt into the background. Someone standing in the first
    frames leaves a ghost where they stood when they walk off, which does not move (see
    ``TrackSettings.min_travel``).

    Args:
        history: frames the background model remembers (MOG2's ``history``).
    """

    def __init__(self, min_height: int = TrackSettings.min_height, history: int = 300,
                 warmup: int = 3):
        self.cv2, _ = require_extra()
        self.min_height = min_height
        self.history, self.warmup = history, warmup
        self.reset()

    def reset(self) -> None:
        self._model = self.cv2.createBackgroundSubtractorMOG2(history=self.history,
                                                              detectShadows=True)
        self._seen = 0

    def _kernels(self) -> tuple[np.ndarray, np.ndarray]:
        """The opening (square) and closing (tall) kernels, scaled with the smallest person."""
        k = max(3, self.min_height // 10) | 1
        return (np.ones((k // 2 | 1, k // 2 | 1), np.uint8),
                np.ones((2 * k + 1, k), np.uint8))

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        cv2 = self.cv2
        self._seen += 1
        # MOG2's own rate, 1 / min(2 n, history) at the n-th frame, learns a person into the
        # background within a few frames early on; after the warm-up it learns at 1 / history
        rate = -1 if self._seen <= self.warmup else 1 / self.history
        mask = self._model.apply(np.ascontiguousarray(pixels[..., ::-1]), learningRate=rate)
        if self._seen <= self.warmup:
            return np.zeros((0, 4))
        mask = (mask == 255).astype(np.uint8)  # 127 marks shadows
        opening, closing = self._kernels()
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, opening)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, closing)
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        x, y, w, h = (stats[1:, i].astype(np.float64) for i in range(4))
        keep = (h >= self.min_height / 2) & (w <= h)
        return np.stack([x, y, x + w, y + h], axis=1)[keep]


class HogDetector:
    """People found by OpenCV's HOG detector with its default people model (Dalal and Triggs'
    64 x 128 window, trained on INRIA pedestrians; the weights ship in OpenCV).

    The window holds a person about 96 pixels tall with a margin around, so the frame is first
    enlarged ``96 / min_height`` times (at most ``max_upscale``) to find people down to
    ``min_height``, and each window is shrunk to the person inside it (a quarter of its width and
    an eighth of its height off each side: on ``vtest.avi`` the shrunk boxes match the background
    detector's blobs of the same people, median height ratio 1.00, width 0.92, IoU 0.79 over 1,912
    detections). Overlapping windows are merged by OpenCV, then by non-maximum suppression;
    windows scoring below ``min_score`` are ignored.
    """

    def __init__(self, min_height: int = TrackSettings.min_height, min_score: float = 0.3,
                 max_upscale: float = 2.0):
        self.cv2, _ = require_extra()
        self.hog = self.cv2.HOGDescriptor()
        self.hog.setSVMDetector(self.cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.upscale = min(max_upscale, max(1.0, 96 / min_height))
        self.min_score = min_score

    def reset(self) -> None:
        """Nothing to forget: each frame is read on its own."""

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        cv2 = self.cv2
        grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
        if self.upscale > 1:
            grey = cv2.resize(grey, None, fx=self.upscale, fy=self.upscale,
                              interpolation=cv2.INTER_LINEAR)
        windows, scores = self.hog.detectMultiScale(grey, winStride=(8, 8), padding=(8, 8),
                                                    scale=1.05)
        if len(windows) == 0:
            return np.zeros((0, 4))
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        kept = cv2.dnn.NMSBoxes([list(map(int, w)) for w in windows], scores.tolist(),
                                self.min_score, 0.4)
        windows = np.asarray(windows, dtype=np.float64)[np.asarray(kept, dtype=int).reshape(-1)]
        x, y, w, h = (windows / self.upscale).T
        return np.stack([x + w / 4, y + h / 8, x + 3 * w / 4, y + 7 * h / 8], axis=1)


def make_detector(settings: TrackSettings) -> PersonDetector:
    """The detector ``settings.detector`` names, sized by ``settings.min_height``."""
    kind = {"background": BackgroundDetector, "hog": HogDetector}[settings.detector]
    return kind(settings.min_height)


# -- tracks ----------------------------------------------------------------------------------------

def _not_an_inverted_box(record: logging.LogRecord) -> bool:
    """Leave out norfair's warning about a box with x0 > x1 or y0 > y1: the Kalman prediction of a
    track that shrank fast (someone leaving the frame) can turn inside out while it coasts; its IoU
    with any detection is 0, so it links nothing, as it should."""
    return "Incorrect bounding boxes" not in record.getMessage()


def box_distance(boxes: np.ndarray, predicted: np.ndarray,
                 max_resize: float = TrackSettings.max_resize) -> np.ndarray:
    """``1 - IoU`` between detections and tracks' predicted boxes, and 1 (no link) where a
    detection's width or height is more than ``max_resize`` times the prediction's or less than
    its inverse: (N, K) float64 for boxes (N, 4) and predicted (K, 4), both ``x0, y0, x1, y1``.

    The size gate keeps a track off the blob of two people who walk into each other (as wide as
    both, IoU with either still high): the track coasts on its prediction until they part.
    """
    size_b = np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-6)[:, None]  # (N, 1, 2) width, height
    size_p = np.maximum(predicted[:, 2:] - predicted[:, :2], 1e-6)[None]
    inter = np.prod(np.clip(np.minimum(boxes[:, None, 2:], predicted[None, :, 2:])
                            - np.maximum(boxes[:, None, :2], predicted[None, :, :2]), 0, None),
                    axis=2)
    iou = inter / (size_b.prod(axis=2) + size_p.prod(axis=2) - inter)
    ratio = np.maximum(size_b / size_p, size_p / size_b).max(axis=2)
    return np.where(ratio <= max_resize, 1 - iou, 1.0)


class Linker:
    """Links each frame's detections to tracks: norfair's tracker with its Kalman filter on the two
    box corners, matching a detection to the track whose predicted box it overlaps most (greedily,
    best pair first) where the IoU is at least ``min_iou`` and the size has not changed more than
    ``max_resize`` times (:func:`box_distance`). Every detection joins a track (a new one if it
    matches none); a track that misses detections for more than ``max_gap`` frames ends.

    Track numbers count from 0 and are never reused, across :meth:`reset` too.
    """

    def __init__(self, max_gap: int, min_iou: float = TrackSettings.min_iou,
                 max_resize: float = TrackSettings.max_resize):
        _, self.norfair = require_extra()
        logging.getLogger("norfair.distances").addFilter(_not_an_inverted_box)  # once: a set
        self.max_gap, self.min_iou, self.max_resize = max(1, int(max_gap)), min_iou, max_resize
        self._numbers: dict[int, int] = {}
        self._step = 0
        self._count = 0
        self.reset()

    def reset(self) -> None:
        """End every track (a shot cut, a new video)."""
        # norfair's hit counter rises by 2 a matched frame up to hit_counter_max and falls by 1 a
        # frame; a track ends below 0, so a track seen for a while survives max_gap missed frames.
        self._tracker = self.norfair.Tracker(distance_function="iou",
                                             distance_threshold=1 - self.min_iou,
                                             hit_counter_max=self.max_gap,
                                             initialization_delay=0)
        # norfair's constructor takes a distance's name or a scalar function; a vectorised one
        # (its own class, called on all pairs at once) is set on the tracker it builds
        self._tracker.distance_function = self.norfair.distances.VectorizedDistance(
            lambda boxes, predicted: box_distance(boxes, predicted, self.max_resize))
        self._numbers = {}

    def __call__(self, boxes: np.ndarray) -> list[tuple[int, int]]:
        """``(track number, row of boxes)`` for every detection of this frame, boxes (N, 4)
        ``x0, y0, x1, y1``. Call it for every frame, with no boxes too, so predictions move on."""
        self._step += 1
        detections = [self.norfair.Detection(points=box.reshape(2, 2), data=(self._step, row))
                      for row, box in enumerate(np.asarray(boxes, dtype=np.float64))]
        linked = []
        for obj in self._tracker.update(detections):
            step, row = obj.last_detection.data
            if step == self._step:
                if obj.id not in self._numbers:
                    self._numbers[obj.id] = self._count
                    self._count += 1
                linked.append((self._numbers[obj.id], row))
        return sorted(linked, key=lambda item: item[1])


@dataclass
class Track:
    """One person's run of detections in one video, between shot cuts.

    Attributes:
        number: the :class:`Linker`'s track number in its video.
        video: index into the videos given.
        frames: frame index of each detection, increasing.
        times: seconds from the start of the video of each detection.
        boxes: ``(x0, y0, x1, y1)`` in pixels of each detection.
        colours: :func:`box_colours` of each detection.
        piece: which piece of the linked track this is, from 0 (see :func:`split_by_colour`).
    """

    number: int
    video: int
    frames: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    colours: list[np.ndarray] = field(default_factory=list, repr=False)
    piece: int = 0

    def part(self, rows: list[int], piece: int) -> Track:
        """The track of the detections ``rows`` (indices, increasing), as piece ``piece``."""
        return Track(self.number, self.video, [self.frames[i] for i in rows],
                     [self.times[i] for i in rows], [self.boxes[i] for i in rows],
                     [self.colours[i] for i in rows], piece)

    @property
    def crops(self) -> str:
        """The name of the folder its crops are written to while tracking: ``<video>-<number>``
        (each video has a linker of its own, numbering its tracks from 0)."""
        return f"{self.video}-{self.number}"

    def trimmed(self, seconds: float) -> Track:
        """The track without its detections of the first and the last ``seconds``."""
        # a frame exactly ``seconds`` from an end stays, whatever the rounding of its time stamp
        start, end = self.times[0] + seconds - 1e-6, self.times[-1] - seconds + 1e-6
        return self.part([i for i, t in enumerate(self.times) if start <= t <= end], self.piece)

    def height(self) -> float:
        """Median box height in pixels."""
        return float(np.median([y1 - y0 for _, y0, _, y1 in self.boxes]))

    def aspect(self) -> float:
        """Median box width over height."""
        return float(np.median([(x1 - x0) / max(y1 - y0, 1e-6) for x0, y0, x1, y1 in self.boxes]))

    def travel(self) -> float:
        """How far the box centre gets from where it started, in median box heights."""
        b = np.asarray(self.boxes)
        centres = (b[:, :2] + b[:, 2:]) / 2
        return float(np.linalg.norm(centres - centres[0], axis=1).max() / max(self.height(), 1))

    def why_dropped(self, settings: TrackSettings) -> str | None:
        """``short``, ``small``, ``wide`` or ``still`` (the first that applies, see
        :class:`TrackSettings`) with the measured value, or None for a track that is kept."""
        if len(self.frames) < settings.min_frames:
            return (f"short: {len(self.frames)} frames (after trimming {settings.trim_s} s at "
                    f"each end) < {settings.min_frames}")
        if self.height() < settings.min_height:
            return f"small: median height {self.height():.0f} px < {settings.min_height}"
        if self.aspect() > settings.max_aspect:
            return (f"wide: median width {self.aspect():.2f} of the height > "
                    f"{settings.max_aspect} (people side by side)")
        if self.travel() < settings.min_travel:
            return (f"still: moved {self.travel():.2f} box heights < {settings.min_travel}")
        return None


def without_size_outliers(track: Track, max_change: float = 1.25, window: int = 5
                          ) -> tuple[Track, int]:
    """The track without the detections whose box is more than ``max_change`` times as high, or
    twice as wide, as the median of the ``window`` detections on each side of it, or less than
    the inverse (a blob of two people, one behind the other, for a few frames; a person half
    hidden), and those more than 1.5 times as wide for their height as the track's median (two
    people side by side as they meet or part: one walking person's width varies less, 0.3-0.5 of
    the height on ``vtest.avi``). A person walking towards the camera grows slowly enough to stay.

    Returns:
        The track (the same piece) and how many detections were left out.
    """
    sizes = np.asarray([(x1 - x0, y1 - y0) for x0, y0, x1, y1 in track.boxes])
    aspects = sizes[:, 0] / np.maximum(sizes[:, 1], 1e-6)
    keep = []
    for i, (w, h) in enumerate(sizes):
        if aspects[i] > 1.5 * np.median(aspects):
            continue
        around = np.delete(sizes[max(0, i - window):i + window + 1], min(i, window), axis=0)
        if len(around) == 0:
            keep.append(i)
            continue
        mw, mh = np.median(around, axis=0)
        if 1 / max_change <= h / mh <= max_change and 0.5 <= w / mw <= 2:
            keep.append(i)
    return track.part(keep, track.piece), len(track.frames) - len(keep)


def split_by_colour(track: Track, threshold: float = TrackSettings.max_colour_change,
                    patience: int = 2, memory: int = 5) -> tuple[list[Track], int]:
    """Cut a track where the colours in its box change: where the tracker went from one person
    to another (two people crossing, one leaving as another arrives).

    Each detection's :func:`box_colours` is compared (:func:`colour_distance`) with the mean of
    the last ``memory`` detections kept before it, which follows slow changes of light along the
    way. Where it differs by more than ``threshold``, the detections up to ``patience`` after it
    are looked at: if the colours come back among them, the detections in between are left out
    (another person or a merged blob for a frame or two); if they do not, the track is cut there
    and a new piece starts.

    Returns:
        The pieces (numbered from 0, in order; none for a track without detections) and how many
        detections were left out.
    """
    n = len(track.frames)
    if n == 0:
        return [], 0
    pieces, current, left_out, i = [], [0], 0, 1
    while i < n:
        reference = np.mean([track.colours[j] for j in current[-memory:]], axis=0)
        if colour_distance(track.colours[i], reference) <= threshold:
            current.append(i)
            i += 1
            continue
        back = next((j for j in range(i + 1, min(i + 1 + patience, n))
                     if colour_distance(track.colours[j], reference) <= threshold), None)
        if back is not None:
            left_out += back - i
            i = back
            continue
        pieces.append(current)
        current = [i]
        i += 1
    pieces.append(current)
    return [track.part(rows, k) for k, rows in enumerate(pieces)], left_out


def square_crop(pixels: np.ndarray, box: Sequence[float], size: int,
                margin: float = TrackSettings.margin, fit: str = TrackSettings.fit,
                background: tuple[int, int, int] = TrackSettings.background) -> np.ndarray:
    """The square around a box, resized: (size, size, 3) uint8.

    The square's side is ``(1 + 2 margin)`` times the box's longer side, centred on the box, so the
    person stays centred and unstretched. With ``fit="pad"`` it shows the box with ``margin``
    times its longer side around it on every side, and ``background`` elsewhere (the way rodi pads
    images: no neighbour beside the person); with ``fit="square"`` it shows the whole square of
    the scene. Wherever it goes past the frame's edge it is ``background``. Resizing uses Lanczos
    filtering, as every image rodi prepares.

    Args:
        pixels: the frame, (H, W, 3) uint8 RGB.
        box: ``x0, y0, x1, y1`` in pixels.

    Raises:
        ValueError: ``fit`` is not one of :data:`rodi.config.TRACK_FITS`.
    """
    if fit not in TRACK_FITS:
        raise ValueError(f"unknown fit {fit!r}; use one of {', '.join(TRACK_FITS)}")
    x0, y0, x1, y1 = (float(v) for v in box)
    longer = max(x1 - x0, y1 - y0)
    side = max(1, round((1 + 2 * margin) * longer))
    left, top = round((x0 + x1 - side) / 2), round((y0 + y1 - side) / 2)
    shown = (left, top, left + side, top + side)
    if fit == "pad":
        m = margin * longer
        shown = (max(left, round(x0 - m)), max(top, round(y0 - m)),
                 min(left + side, round(x1 + m)), min(top + side, round(y1 + m)))
    canvas = np.empty((side, side, 3), np.uint8)
    canvas[:] = background
    h, w = pixels.shape[:2]
    sx0, sy0 = max(shown[0], 0), max(shown[1], 0)
    sx1, sy1 = min(shown[2], w), min(shown[3], h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = pixels[sy0:sy1, sx0:sx1]
    return np.asarray(Image.fromarray(canvas).resize((size, size), Image.Resampling.LANCZOS))


# -- one video -------------------------------------------------------------------------------------

@dataclass
class VideoSummary:
    """What tracking found in one video: ``frames`` decoded, ``rate`` (frames per second),
    ``duration_s``, ``cuts`` (frame indices that start a new shot), ``detections`` in all,
    ``colour_cuts`` (tracks cut where their colours changed, see :func:`split_by_colour`) and
    ``outliers`` (detections left out of their track for an odd size or a frame or two of other
    colours, see :func:`without_size_outliers`) and ``trimmed`` (detections at the ends of
    tracks, see ``TrackSettings.trim_s``)."""

    path: str
    frames: int = 0
    rate: float | None = None
    duration_s: float = 0.0
    cuts: list[int] = field(default_factory=list)
    detections: int = 0
    colour_cuts: int = 0
    outliers: int = 0
    trimmed: int = 0


def track_video(path: str | os.PathLike, video: int, detector: PersonDetector, linker: Linker,
                cuts: CutDetector, crops: Path, settings: TrackSettings,
                progress: bool = False) -> tuple[list[Track], VideoSummary]:
    """Find, link and crop the people of one video.

    The crop (:func:`square_crop`) of every detection clear of the frame's edges
    (:func:`within_frame`) is written as ``crops/<Track.crops>/<frame index, 6 digits>.png`` as
    its frame goes by, so no frame is kept in memory; a track is made of those detections.

    Each linked track then loses the detections of an odd size (:func:`without_size_outliers`),
    is cut where its colours change (:func:`split_by_colour`), and each piece loses its ends
    (``settings.trim_s``).

    Returns:
        The tracks (by track number and piece; a track trimmed to nothing has no detections left)
        and the video's :class:`VideoSummary`.

    Raises:
        VideoReadError: the file is missing or cannot be decoded (see
            :func:`rodi.data.video.full_frames`).
    """
    info = probe_video(path)
    summary = VideoSummary(str(path), rate=float(info.rate) if info.rate else None)
    tracks: dict[int, Track] = {}
    for reset in (detector.reset, linker.reset, cuts.reset):
        reset()
    bar = tqdm(total=info.frames, unit="frame", desc=f"tracking {Path(path).name}",
               disable=not progress)
    with bar:
        for frame in full_frames(path):
            if cuts(frame.pixels):
                summary.cuts.append(frame.index)
                detector.reset()
                linker.reset()
            boxes = detector(frame.pixels)
            inside = within_frame(boxes, frame.pixels.shape)
            for number, row in linker(boxes):
                if inside[row]:  # a person cut off by the frame's edge is tracked, not cropped
                    track = tracks.setdefault(number, Track(number, video))
                    _add(track, frame, boxes[row], crops, settings)
            summary.frames, summary.detections = frame.index + 1, summary.detections + len(boxes)
            summary.duration_s = max(summary.duration_s, frame.time + 1 / float(info.rate or 1))
            bar.update(1)
    pieces = []
    for track in tracks.values():
        track, odd_sizes = without_size_outliers(track)
        parts, odd_colours = split_by_colour(track, settings.max_colour_change)
        summary.colour_cuts += len(parts) - 1
        summary.outliers += odd_sizes + odd_colours
        for part in parts:
            trimmed = part.trimmed(settings.trim_s)
            summary.trimmed += len(part.frames) - len(trimmed.frames)
            pieces.append(trimmed)
    return sorted(pieces, key=lambda t: (t.number, t.piece)), summary


def within_frame(boxes: np.ndarray, shape: tuple[int, ...], border: float = 2) -> np.ndarray:
    """(N,) bool: which boxes (N, 4) stay ``border`` pixels clear of the edges of a frame of
    ``shape`` (H, W, ...): the others show a person partly outside the picture."""
    h, w = shape[:2]
    return ((boxes[:, 0] >= border) & (boxes[:, 1] >= border)
            & (boxes[:, 2] <= w - border) & (boxes[:, 3] <= h - border))


def _add(track: Track, frame: Frame, box: np.ndarray, crops: Path,
         settings: TrackSettings) -> None:
    folder = crops / track.crops
    folder.mkdir(exist_ok=True)
    crop = square_crop(frame.pixels, box, settings.size, settings.margin, settings.fit,
                       settings.background)
    Image.fromarray(crop).save(folder / f"{frame.index:06d}.png")
    track.frames.append(frame.index)
    track.times.append(round(frame.time, 4))
    track.boxes.append(tuple(round(float(v), 1) for v in box))
    track.colours.append(box_colours(frame.pixels, box))


# -- splits ----------------------------------------------------------------------------------------

def held_out_counts(n: int, test_fraction: float, validation_fraction: float) -> tuple[int, int]:
    """How many of ``n`` videos go to ``test`` and to ``validation``: at least one to test where
    ``test_fraction > 0`` and at least one stays in train; validation only where two or more stay
    in train after it."""
    if n < 2 or test_fraction == 0:
        return 0, 0
    n_test = min(max(1, round(n * test_fraction)), n - 1)
    n_validation = min(round(n * validation_fraction), n - n_test - 1)
    return n_test, max(0, n_validation)


def assign_splits(tracks: list[Track], videos: list[VideoSummary],
                  settings: TrackSettings) -> list[str]:
    """The split of each track (``train``, ``validation`` or ``test``).

    One person may be split into several tracks by an occlusion, so tracks are not held out one by
    one. With several videos, whole videos are (the last given, see :func:`held_out_counts`); with
    one, time is: a track starting in the last ``test_fraction`` of the footage's time is ``test``,
    one starting in the ``validation_fraction`` before that ``validation``. A person tracked
    across that boundary and lost and found again just after it is the one leak left.
    """
    if len(videos) > 1:
        n_test, n_validation = held_out_counts(len(videos), settings.test_fraction,
                                               settings.validation_fraction)
        first_test, first_validation = len(videos) - n_test, len(videos) - n_test - n_validation
        return ["test" if t.video >= first_test else
                "validation" if t.video >= first_validation else "train" for t in tracks]
    duration = videos[0].duration_s or 1.0
    test_from = (1 - settings.test_fraction) * duration
    validation_from = test_from - settings.validation_fraction * duration
    return ["test" if settings.test_fraction and t.times[0] >= test_from else
            "validation" if settings.validation_fraction and t.times[0] >= validation_from
            else "train" for t in tracks]


# -- the whole job ---------------------------------------------------------------------------------

def identity_names(tracks: list[Track], videos: Sequence[str | os.PathLike]) -> list[str]:
    """``<video stem>-<n, 3 digits>`` for each track, n counting each video's tracks from 0 in the
    order given; the stems are prefixed with the video's number where two videos share one."""
    stems = [Path(v).stem for v in videos]
    if len(set(stems)) < len(stems):
        stems = [f"{i:02d}-{s}" for i, s in enumerate(stems)]
    counts: dict[int, int] = {}
    names = []
    for t in tracks:
        counts[t.video] = counts.get(t.video, -1) + 1
        names.append(f"{stems[t.video]}-{counts[t.video]:03d}")
    return names


def cut_tracks(videos: Sequence[str | os.PathLike], out: str | os.PathLike,
               settings: TrackSettings = TrackSettings(), sheet: str | os.PathLike | None = None,
               crops_per_row: int = 8, progress: bool = True) -> dict:
    """Cut footage of people into an identity folder for the ``folder`` source.

    Writes, all at once when complete (a temporary folder beside ``out``, renamed at the end; see
    :func:`rodi.atomic.new_folder`):

    - ``out/<identity>/<frame index, 6 digits>.png``: the identity's crops, ``settings.size``
      pixels square (:func:`square_crop`), one per frame in which it was detected;
    - ``out/manifest.csv``: one row per crop, columns :data:`MANIFEST_COLUMNS` (time in seconds,
      the box in the video's pixels);
    - ``out/index.csv``: ``identity,path,split`` for the ``index`` source, paths relative to it,
      splits from :func:`assign_splits`;
    - ``out/summary.json``: the settings, each video's :class:`VideoSummary`, every identity (split,
      frames, first and last time, median height) and every dropped track with its reason;
    - ``sheet`` (default: ``out`` with ``.png`` added, beside the folder, where the ``folder``
      source does not see it): one row per identity in the order of ``summary.json``, a label
      (row number, split, crops) and ``crops_per_row`` crops spread over the track.

    Returns:
        The summary as written to ``summary.json``, plus the ``sheet``'s path.

    Raises:
        ConfigError: a setting is out of its range (:meth:`TrackSettings.check`).
        TracksError: the extra is missing, ``out`` exists and is not empty, nobody was found, or
            every track was dropped (saying how many for each reason).
        VideoReadError: a video is missing or cannot be decoded (checked for all videos before
            any is tracked).
    """
    settings.check()
    out = Path(out)
    sheet = Path(sheet) if sheet is not None else out.with_name(out.name + ".png")
    videos = [Path(v) for v in videos]
    if not videos:
        raise TracksError("give at least one video")
    rates = [probe_video(v).rate for v in videos]  # a bad file fails now, not after the others
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise TracksError(f"{out} already exists; choose a new folder or remove it")
    detector = make_detector(settings)
    cuts = CutDetector(settings.cut_threshold)
    try:
        with new_folder(out) as tmp:
            crops = tmp / ".crops"
            crops.mkdir()
            tracks, summaries = [], []
            for i, (v, rate) in enumerate(zip(videos, rates)):
                linker = Linker(round(settings.max_gap_s * float(rate or 10)), settings.min_iou,
                                settings.max_resize)
                found, summary = track_video(v, i, detector, linker, cuts, crops, settings,
                                             progress)
                tracks += found
                summaries.append(summary)
            result = _keep_and_write(tracks, summaries, videos, tmp, crops, settings)
            _write_sheet(result, tmp, sheet, crops_per_row, settings.size)
    except FileExistsError:
        raise TracksError(f"{out} already exists; choose a new folder or remove it") from None
    return {**result, "sheet": str(sheet)}


def _keep_and_write(tracks: list[Track], summaries: list[VideoSummary], videos: list[Path],
                    folder: Path, crops: Path, settings: TrackSettings) -> dict:
    """Drop tracks, name and split the rest, move their crops into identity folders and write the
    manifest, the index and the summary. Returns the summary."""
    if not tracks:
        detail = ", ".join(f"{s.frames} frames of {Path(s.path).name}" for s in summaries)
        raise TracksError(f"no person found in {detail} by the {settings.detector} detector"
                          + (" (it needs a static camera; try --detector hog)"
                             if settings.detector == "background" else
                             " (try --detector background for a static camera, or a lower "
                             "--min-height)"))
    reasons = [t.why_dropped(settings) for t in tracks]
    kept = sorted((t for t, why in zip(tracks, reasons) if why is None),
                  key=lambda t: (t.video, t.frames[0], t.number, t.piece))
    dropped = [{"track": t.number, "piece": t.piece, "video": str(videos[t.video]),
                "first_frame": t.frames[0] if t.frames else None, "frames": len(t.frames),
                "reason": why}
               for t, why in zip(tracks, reasons) if why is not None]
    counts = {kind: sum(d["reason"].startswith(kind) for d in dropped)
              for kind in ("short", "small", "wide", "still")}
    if not kept:
        raise TracksError(f"all {len(tracks)} tracks were dropped ("
                          + ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
                          + f"; --min-frames {settings.min_frames}, --min-height "
                          f"{settings.min_height} px, --max-aspect {settings.max_aspect}, "
                          f"--min-travel {settings.min_travel})")
    names = identity_names(kept, videos)
    splits = assign_splits(kept, summaries, settings)
    identities = []
    manifest_rows, index_rows = [], []
    for track, name, split in zip(kept, names, splits):
        (folder / name).mkdir()
        for frame, t, box in zip(track.frames, track.times, track.boxes):
            os.rename(crops / track.crops / f"{frame:06d}.png",
                      folder / name / f"{frame:06d}.png")
            manifest_rows.append([name, split, str(videos[track.video]), frame, t, *box])
            index_rows.append([name, f"{name}/{frame:06d}.png", split])
        identities.append({"identity": name, "split": split, "video": str(videos[track.video]),
                           "frames": len(track.frames), "first_s": track.times[0],
                           "last_s": track.times[-1], "median_height": round(track.height(), 1)})
    _write_csv(folder / "manifest.csv", MANIFEST_COLUMNS, manifest_rows)
    _write_csv(folder / "index.csv", ("identity", "path", "split"), index_rows)
    shutil.rmtree(crops)  # the crops of dropped tracks and left-out detections
    summary = {
        "settings": asdict(settings),
        "videos": [asdict(s) for s in summaries],
        "tracks": len(tracks),
        "identities_per_split": {s: splits.count(s) for s in SPLITS},
        "dropped_per_reason": counts,
        "identities": identities,
        "dropped": dropped,
    }
    with replacing(folder / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def _write_csv(path: Path, header: Sequence[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _label(size: int, lines: list[str]) -> np.ndarray:
    """A (size, size, 3) uint8 white cell with a few short lines of text."""
    im = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    for k, line in enumerate(lines):
        draw.text((3, 3 + 12 * k), line, fill=(0, 0, 0))
    return np.asarray(im)


def spread(n: int, k: int) -> list[int]:
    """``min(n, k)`` indices into ``n`` items, evenly spread from the first to the last."""
    if n <= k:
        return list(range(n))
    return [round(i * (n - 1) / (k - 1)) for i in range(k)] if k > 1 else [0]


def _write_sheet(summary: dict, folder: Path, sheet: Path, per_row: int, size: int) -> None:
    rows = []
    for k, identity in enumerate(summary["identities"]):
        files = sorted((folder / identity["identity"]).iterdir())
        cells = [_label(size, [str(k), identity["split"][:5], f"n={len(files)}"])]
        cells += [np.asarray(Image.open(files[i]).convert("RGB")) for i in spread(len(files),
                                                                                  per_row)]
        rows.append(cells)
    with replacing(sheet) as tmp:
        Image.fromarray(contact_sheet(rows)).save(tmp, format="PNG")

"""``rodi data tracks``: people found, linked into tracks and cut into an identity folder.

The clips are made here: coloured figures walking across a static textured background, whose true
boxes are known, so the tracker is scored as a multi-object tracker is (identity switches, mean IoU
against the true boxes), not only run.
"""

import csv
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import write_video
from rodi.cli import main
from rodi.config import ConfigError, TrackSettings
from rodi.data.folders import IdentityFolder, IndexFile
from rodi.data.tracks import (
    CutDetector,
    Linker,
    Track,
    TracksError,
    assign_splits,
    box_distance,
    cut_tracks,
    held_out_counts,
    require_extra,
    split_by_colour,
    square_crop,
    without_size_outliers,
)
from rodi.data.video import VideoReadError

pytest.importorskip("cv2", reason="the rodi[tracks] extra (OpenCV) is not installed")
pytest.importorskip("norfair", reason="the rodi[tracks] extra (norfair) is not installed")

W, H, RATE = 200, 120, 10
FIGURE_W, FIGURE_H = 16, 40
# settings for the small clips: figures 40 px high, ~30 frames fully in view each; every crop
# kept (no trimming of the tracks' ends) so that the tracks can be scored frame by frame
SMALL = TrackSettings(min_frames=5, min_height=20, size=32, trim_s=0)


def background(seed: int = 0, tint=(90, 110, 90)) -> np.ndarray:
    """A static (H, W, 3) uint8 scene: a tinted gradient with fixed texture."""
    g = np.random.default_rng(seed)
    y = np.linspace(0, 1, H)[:, None, None]
    scene = np.asarray(tint, float) * (0.7 + 0.6 * y) + g.normal(0, 12, (H, W, 3))
    return np.broadcast_to(scene, (H, W, 3)).clip(0, 255).astype(np.uint8)


def crossing_figures(n: int = 48) -> dict[str, dict[int, tuple]]:
    """True boxes (x0, y0, x1, y1) of two figures per frame: ``red`` enters on the left, ``blue``
    on the right, 5 px a frame each; they cross in the middle (frames 20-24, their boxes overlapping
    and their blobs merging), 8 px apart in height."""
    boxes = {"red": {}, "blue": {}}
    for t in range(n):
        for name, x0, y0 in (("red", -20 + 5 * t, 50), ("blue", 204 - 5 * t, 58)):
            if x0 + FIGURE_W > 0 and x0 < W:
                boxes[name][t] = (x0, y0, x0 + FIGURE_W, y0 + FIGURE_H)
    return boxes


COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 230)}


def render(boxes: dict[str, dict[int, tuple]], n: int, scene: np.ndarray) -> np.ndarray:
    """(n, H, W, 3) uint8 frames: each figure a two-tone rectangle (jacket and trousers) drawn
    over ``scene``, blue in front of red."""
    frames = np.repeat(scene[None], n, axis=0).copy()
    for name in ("red", "blue"):
        for t, (x0, y0, x1, y1) in boxes[name].items():
            xs, xe = max(x0, 0), min(x1, W)
            frames[t, y0:y0 + 24, xs:xe] = COLOURS[name]
            frames[t, y0 + 24:y1, xs:xe] = (30, 30, 60)
    return frames


def write_clip(path, frames) -> None:
    write_video(path, frames, rate=RATE, codec="ffv1", pix_fmt="bgr0")  # lossless


@pytest.fixture(scope="module")
def crossing(tmp_path_factory):
    """A lossless clip of the two crossing figures and their true boxes."""
    boxes = crossing_figures()
    path = tmp_path_factory.mktemp("clips") / "crossing.mkv"
    write_clip(path, render(boxes, 48, background()))
    return path, boxes


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def score(linked: dict[int, dict[int, tuple]], truth: dict[str, dict[int, tuple]]
          ) -> tuple[int, float, int]:
    """Identity switches, mean IoU and missed true boxes of tracks against the true boxes.

    ``linked`` is track -> frame -> box. Each track box is matched to the true box it overlaps
    most in its frame (IoU at least 0.3). A switch is a figure's matched track changing from one
    matched frame to its next; the mean IoU is over every true box, with 0 for a missed one.
    """
    matched = {name: {} for name in truth}  # figure -> frame -> (track, iou)
    for track, frames in linked.items():
        for t, box in frames.items():
            best = max(truth, key=lambda name: iou(box, truth[name].get(t, (0, 0, 1e-9, 1e-9))))
            overlap = iou(box, truth[best].get(t, (0, 0, 1e-9, 1e-9)))
            if overlap >= 0.3 and overlap > matched[best].get(t, (None, 0))[1]:
                matched[best][t] = (track, overlap)
    switches = sum(sum(a != b for a, b in zip(ids, ids[1:]))
                   for ids in ([m[t][0] for t in sorted(m)] for m in matched.values()))
    total = sum(len(frames) for frames in truth.values())
    ious = [m[1] for frames in matched.values() for m in frames.values()]
    return switches, float(np.sum(ious) / total), total - len(ious)


def link_true_boxes(link, truth, jitter: float, seed: int = 0) -> dict[int, dict[int, tuple]]:
    """Feed every frame's true boxes, jittered and in a shuffled order, to ``link`` (a callable
    like :class:`Linker`) and gather track -> frame -> box."""
    g = np.random.default_rng(seed)
    frames = sorted({t for boxes in truth.values() for t in boxes})
    out: dict[int, dict[int, tuple]] = {}
    for t in frames:
        boxes = np.array([truth[name][t] for name in truth if t in truth[name]], dtype=float)
        boxes = boxes[g.permutation(len(boxes))] + g.normal(0, jitter, boxes.shape)
        for track, row in link(boxes):
            out.setdefault(track, {})[t] = tuple(boxes[row])
    return out


class LeftToRight:
    """A broken linker: the k-th detection from the left is track k. Right while people keep
    their order across the frame; wrong as soon as two pass each other."""

    def __call__(self, boxes):
        return [(k, int(row)) for k, row in enumerate(np.argsort(boxes[:, 0]))]


def read_manifest(folder) -> dict[str, dict[int, tuple]]:
    """identity -> frame -> box from a written manifest.csv."""
    out: dict[str, dict[int, tuple]] = {}
    with open(folder / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            box = tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1"))
            out.setdefault(row["identity"], {})[int(row["frame"])] = box
    return out


# -- the tracker, on true boxes --------------------------------------------------------------------

def test_the_linker_follows_two_crossing_people_without_a_switch():
    truth = crossing_figures()
    switches, mean_iou, missed = score(link_true_boxes(Linker(max_gap=10), truth, jitter=1.0),
                                       truth)
    assert (switches, missed) == (0, 0)
    assert mean_iou > 0.85


def test_the_score_catches_a_linker_that_swaps_people_where_they_cross():
    """The measure of the test above means something: linking by left-to-right order gets the
    same boxes (so the same IoU) but swaps the two figures where they pass each other."""
    truth = crossing_figures()
    switches, mean_iou, _ = score(link_true_boxes(LeftToRight(), truth, jitter=1.0), truth)
    assert switches >= 2 and mean_iou > 0.85


def test_the_size_gate_keeps_a_track_off_a_blob_twice_as_wide():
    track = np.array([[100.0, 50, 116, 90]])
    alone, merged = np.array([[102.0, 50, 118, 90]]), np.array([[100.0, 50, 134, 90]])
    assert box_distance(alone, track)[0, 0] < 0.3
    assert box_distance(merged, track)[0, 0] == 1.0  # IoU 0.47, but 2.1 times as wide
    assert box_distance(merged, track, max_resize=3.0)[0, 0] == pytest.approx(1 - 16 / 34)


def test_a_reset_ends_every_track_and_numbers_are_never_reused():
    linker = Linker(max_gap=10)
    box = np.array([[10.0, 10, 26, 50]])
    first = [linker(box)[0][0] for _ in range(3)]
    linker.reset()
    assert first == [0, 0, 0] and linker(box) == [(1, 0)]


def made_track(colours: str, heights=None) -> Track:
    """A track of one detection per letter: ``r`` a red person, ``b`` a blue one."""
    palette = {"r": np.eye(64)[10], "b": np.eye(64)[50]}
    n = len(colours)
    heights = heights or [40] * n
    return Track(0, 0, list(range(n)), [t / 10 for t in range(n)],
                 [(5.0 * t, 10.0, 5.0 * t + 16, 10.0 + h) for t, h in enumerate(heights)],
                 [palette[c] for c in colours])


def test_a_track_is_cut_where_it_goes_over_to_someone_else():
    pieces, left_out = split_by_colour(made_track("rrrrrrbbbbbb"))
    assert [p.frames for p in pieces] == [list(range(6)), list(range(6, 12))]
    assert [p.piece for p in pieces] == [0, 1] and left_out == 0


def test_a_frame_or_two_of_someone_else_is_left_out_not_cut():
    pieces, left_out = split_by_colour(made_track("rrrrbbrrrr"))
    assert [p.frames for p in pieces] == [[0, 1, 2, 3, 6, 7, 8, 9]] and left_out == 2


def test_a_box_of_two_people_one_behind_the_other_is_left_out():
    track, left_out = without_size_outliers(made_track("r" * 12, [40] * 5 + [60] + [40] * 6))
    assert left_out == 1 and 5 not in track.frames
    growing = made_track("r" * 12, [40 + 2 * t for t in range(12)])  # walking towards the camera
    assert without_size_outliers(growing)[1] == 0


# -- the whole command, on rendered clips ----------------------------------------------------------

def test_background_subtraction_tracks_both_crossing_figures_as_one_identity_each(crossing,
                                                                                  tmp_path):
    path, truth = crossing
    summary = cut_tracks([path], tmp_path / "people", SMALL, progress=False)
    linked = read_manifest(tmp_path / "people")
    # the true boxes in frames where a crop is written (the figure clear of the frame's edges)
    inside = {name: {t: b for t, b in boxes.items() if b[0] >= 2 and b[2] <= W - 2}
              for name, boxes in truth.items()}
    switches, mean_iou, missed = score(linked, inside)
    assert summary["identities_per_split"]["train"] == len(linked) == 2
    assert switches == 0 and mean_iou > 0.7
    assert missed <= 8  # the frames where the two merge into one blob, bridged by the tracker
    for name, frames in linked.items():
        crops = sorted(p.name for p in (tmp_path / "people" / name).iterdir())
        assert crops == [f"{t:06d}.png" for t in sorted(frames)]


def test_tracks_lose_their_ends(crossing, tmp_path):
    path, _ = crossing
    cut_tracks([path], tmp_path / "whole", SMALL, progress=False)
    settings = TrackSettings(min_frames=5, min_height=20, size=32, trim_s=0.3)
    cut_tracks([path], tmp_path / "trimmed", settings, progress=False)
    whole, trimmed = read_manifest(tmp_path / "whole"), read_manifest(tmp_path / "trimmed")
    assert len(whole) == len(trimmed) == 2
    for name, frames in whole.items():  # 3 frames at 10 fps off each end
        assert sorted(trimmed[name]) == [t for t in sorted(frames) if t not in
                                         sorted(frames)[:3] + sorted(frames)[-3:]]


def test_the_folder_holds_crops_a_manifest_an_index_and_a_summary(crossing, tmp_path):
    path, _ = crossing
    out = tmp_path / "people"
    summary = cut_tracks([path], out, SMALL, progress=False)
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["identity", "split", "video", "frame", "time_s", "x0", "y0", "x1",
                             "y1"]
    assert all(float(r["time_s"]) == pytest.approx(int(r["frame"]) / RATE) for r in rows)
    crop = Image.open(out / rows[0]["identity"] / f"{int(rows[0]['frame']):06d}.png")
    assert crop.size == (32, 32)
    assert json.loads((out / "summary.json").read_text())["identities"] == summary["identities"]
    sheet = Image.open(tmp_path / "people.png")  # beside the folder, out of the folder source
    assert sheet.size == (9 * 34 + 2, 2 * 34 + 2)  # a label and 8 crops per identity
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    source = IdentityFolder(out, image_size=32, validation_fraction=0, cache_dir=tmp_path / "c",
                            progress=False)
    assert source.summary()["skipped"] == [] and len(source.identities) == 2
    index = IndexFile(out / "index.csv", image_size=32, cache_dir=tmp_path / "c", progress=False)
    assert index.summary()["images"] == len(rows)


def test_with_several_videos_the_last_ones_are_held_out_whole(crossing, tmp_path):
    path, _ = crossing
    videos = [tmp_path / f"{name}.mkv" for name in ("monday", "tuesday")]
    for v in videos:
        v.write_bytes(path.read_bytes())
    summary = cut_tracks(videos, tmp_path / "people", SMALL, progress=False)
    assert {(i["identity"].split("-")[0], i["split"]) for i in summary["identities"]} == {
        ("monday", "train"), ("tuesday", "test")}
    index = IndexFile(tmp_path / "people" / "index.csv", image_size=32,
                      cache_dir=tmp_path / "c", progress=False)
    assert [len(index.split(s)) for s in ("train", "validation", "test")] == [2, 0, 2]


def test_shot_cuts_end_every_track(tmp_path):
    """A figure keeps walking across a cut to another scene: two identities, split at the cut."""
    boxes = {"red": {t: (20 + 4 * t, 40, 36 + 4 * t, 80) for t in range(40)}, "blue": {}}
    frames = render(boxes, 40, background(0))
    frames[20:] = render({"red": {t: b for t, b in boxes["red"].items() if t >= 20},
                          "blue": {}}, 40, background(1, tint=(160, 120, 200)))[20:]
    write_clip(tmp_path / "cut.mkv", frames)
    summary = cut_tracks([tmp_path / "cut.mkv"], tmp_path / "people", SMALL, progress=False)
    assert summary["videos"][0]["cuts"] == [20]
    spans = sorted((min(f), max(f)) for f in read_manifest(tmp_path / "people").values())
    assert len(spans) == 2 and spans[0][1] < 20 <= spans[1][0]


def test_the_cut_detector_ignores_motion_and_sees_a_new_scene():
    truth = crossing_figures()
    frames = render(truth, 48, background())
    cuts = CutDetector()
    assert not any(cuts(f) for f in frames)
    assert cuts(background(1, tint=(160, 120, 200)))


def test_held_out_identities_are_the_last_part_of_the_time_or_the_last_videos():
    from rodi.data.tracks import VideoSummary

    tracks = [Track(k, 0, frames=[t], times=[t]) for k, t in enumerate((0, 60, 75, 85, 99))]
    one = [VideoSummary("a.mp4", duration_s=100.0)]
    assert assign_splits(tracks, one, TrackSettings()) == ["train", "train", "validation",
                                                           "test", "test"]
    several = [VideoSummary(f"{i}.mp4") for i in range(10)]
    tracks = [Track(k, video=k) for k in range(10)]
    assert assign_splits(tracks, several, TrackSettings()) == ["train"] * 7 + ["validation"] + [
        "test"] * 2
    assert held_out_counts(2, 0.2, 0.1) == (1, 0) and held_out_counts(1, 0.2, 0.1) == (0, 0)


def test_a_crop_is_square_centred_on_the_box_and_padded_at_the_edges():
    frame = np.full((100, 100, 3), 50, np.uint8)
    frame[20:80, 40:60] = 255
    for fit in ("pad", "square"):
        crop = square_crop(frame, (40, 20, 60, 80), 72, margin=0.1, fit=fit)  # 72 px: as cut
        assert crop.shape == (72, 72, 3)
        cols = np.flatnonzero(crop[36, :, 0] > 127)
        rows = np.flatnonzero(crop[:, 36, 0] > 127)
        assert (cols[0], cols[-1], rows[0], rows[-1]) == (26, 45, 6, 65)
    # the margin is 6 px (0.1 of the box's longer side): pad shows 6 px of scene beside the box
    # and background beyond; square shows the scene to the square's edge
    pad = square_crop(frame, (40, 20, 60, 80), 72, fit="pad", background=(7, 8, 9))
    square = square_crop(frame, (40, 20, 60, 80), 72, fit="square", background=(7, 8, 9))
    assert pad[36, 20].tolist() == [50] * 3 and pad[36, 19].tolist() == [7, 8, 9]
    assert square[36, 0].tolist() == [50] * 3
    corner = square_crop(frame, (0, 0, 20, 20), 24, margin=0.1, fit="square",
                         background=(7, 8, 9))
    assert corner[0, 0].tolist() == [7, 8, 9] and corner[-1, -1].tolist() == [50, 50, 50]


# -- bad input -------------------------------------------------------------------------------------

def test_a_missing_or_undecodable_video_fails_before_anything_is_written(crossing, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    for videos in ([tmp_path / "missing.mp4"], [crossing[0], bad]):
        with pytest.raises(VideoReadError):
            cut_tracks(videos, tmp_path / "people", SMALL, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]


def test_a_video_with_nobody_in_it_is_an_error_and_leaves_nothing(tmp_path):
    write_clip(tmp_path / "empty.mkv", np.repeat(background()[None], 20, axis=0))
    with pytest.raises(TracksError, match="no person found"):
        cut_tracks([tmp_path / "empty.mkv"], tmp_path / "people", SMALL, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mkv"]


def test_every_track_too_short_is_an_error_naming_the_reasons(crossing, tmp_path):
    settings = TrackSettings(min_frames=1000, min_height=20)
    with pytest.raises(TracksError, match=r"all \d+ tracks were dropped \(\d+ short"):
        cut_tracks([crossing[0]], tmp_path / "people", settings, progress=False)
    assert not (tmp_path / "people").exists() and not list(tmp_path.iterdir())


def test_an_existing_folder_and_bad_settings_are_refused(crossing, tmp_path):
    (tmp_path / "people").mkdir()
    (tmp_path / "people" / "keep.txt").write_text("mine")
    with pytest.raises(TracksError, match="already exists"):
        cut_tracks([crossing[0]], tmp_path / "people", SMALL, progress=False)
    assert (tmp_path / "people" / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="min_iou"):
        cut_tracks([crossing[0]], tmp_path / "other", TrackSettings(min_iou=0), progress=False)


def test_without_the_extra_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if OpenCV were not installed
    with pytest.raises(TracksError, match=r"pip install 'rodi\[tracks\]'"):
        require_extra()


# -- the command line ------------------------------------------------------------------------------

def test_the_command_writes_the_folder_and_reports_what_it_kept_and_dropped(crossing, tmp_path):
    out = tmp_path / "people"
    result = CliRunner().invoke(main, ["data", "tracks", str(crossing[0]), "-o", str(out),
                                       "--min-frames", "5", "--min-height", "20", "--size", "32",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "identities kept: 2 (2 train, 0 validation, 0 test)" in result.output
    assert "dropped:" in result.output and (tmp_path / "people.png").is_file()
    assert (out / "index.csv").is_file()


@pytest.mark.parametrize("case", ["missing", "nobody", "too short", "no extra"])
def test_the_command_reports_bad_input_in_one_line(case, crossing, tmp_path, monkeypatch):
    video, options = crossing[0], ["--min-height", "20"]
    if case == "missing":
        video = tmp_path / "missing.mp4"
    elif case == "nobody":
        video = tmp_path / "empty.mkv"
        write_clip(video, np.repeat(background()[None], 12, axis=0))
    elif case == "too short":
        options = ["--min-frames", "1000"]
    else:
        monkeypatch.setitem(sys.modules, "norfair", None)
    result = CliRunner().invoke(main, ["data", "tracks", str(video), "-o", str(tmp_path / "o"),
                                       "--no-progress", *options])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    expected = {"missing": "no such file", "nobody": "no person found",
                "too short": "short", "no extra": "pip install 'rodi[tracks]'"}[case]
    assert expected in lines[0]

"""Motion retargeting and interpolation: what is rendered from which codes, and the videos and grids
``rodi retarget`` and ``rodi interpolate`` write."""

import subprocess
import sys
import warnings
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import write_video
from rodi.cli import main
from rodi.data.images import to_tensor
from rodi.inference import grid_weights, interpolate, load, walk_weights
from rodi.viz import to_uint8
from video_samples import cut_mp4

S = 64  # the tiny checkpoint's image size


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load(tiny_checkpoint, "cpu")


def character_frames(sheets, character: int, poses) -> np.ndarray:
    """Sprites of one character in the given poses: (N, S, S, 3) uint8."""
    poses = torch.as_tensor(poses)
    return to_uint8(sheets.render(torch.full_like(poses, character), poses))


@pytest.fixture(scope="module")
def inputs(sheets, tmp_path_factory):
    """A pose video (7 frames at 15 fps), two appearance and two pose images, as files."""
    tmp = tmp_path_factory.mktemp("inputs")
    write_video(tmp / "pose.mp4", character_frames(sheets, 3, range(7)), rate=15)
    for name, character, pose in [("a0", 7, 20), ("a1", 9, 30), ("p0", 11, 2), ("p1", 13, 40)]:
        Image.fromarray(character_frames(sheets, character, [pose])[0]).save(tmp / f"{name}.png")
    return tmp


def decoded(path) -> tuple[list[np.ndarray], Fraction, str]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, stream.average_rate, stream.codec_context.name


# -- retargeting -----------------------------------------------------------------------------------


def test_each_frame_is_the_appearance_rendered_in_that_frames_pose(model, inputs):
    code, _ = model.appearance_code(inputs / "a0.png")
    rendered = np.concatenate(list(model.retarget_frames(code, inputs / "pose.mp4")))
    poses = to_tensor(np.stack(list(model.frames(inputs / "pose.mp4"))))
    app = model.prepare([inputs / "a0.png"]).expand(len(poses), -1, -1, -1)
    expected = to_uint8(model.network.transfer(app, poses))
    assert rendered.shape == (7, S, S, 3)
    assert np.abs(rendered.astype(int) - expected).max() <= 1  # batch sizes differ: float rounding


def test_side_by_side_shows_pose_frame_appearance_and_render(model, inputs):
    code, app_frames = model.appearance_code(inputs / "a0.png")
    plain = np.concatenate(list(model.retarget_frames(code, inputs / "pose.mp4")))
    wide = np.concatenate(list(model.retarget_frames(code, inputs / "pose.mp4", app_frames)))
    poses = np.stack(list(model.frames(inputs / "pose.mp4")))
    assert wide.shape == (7, S, 3 * S, 3)
    assert np.array_equal(wide[:, :, :S], poses)
    assert np.array_equal(wide[:, :, S:2 * S], np.repeat(app_frames, 7, axis=0))
    assert np.array_equal(wide[:, :, 2 * S:], plain)


def test_a_video_appearance_averages_the_codes_of_its_frames(model, sheets, tmp_path):
    frames = character_frames(sheets, 5, [0, 25, 50])
    write_video(tmp_path / "three.mkv", frames, codec="ffv1", pix_fmt="bgr0")  # lossless
    code, used = model.appearance_code(tmp_path / "three.mkv")
    codes = model.network.encode_appearance(to_tensor(frames))
    assert np.array_equal(used, frames)
    torch.testing.assert_close(code, codes.mean(0, keepdim=True), rtol=0, atol=1e-5)


def test_a_video_of_one_repeated_frame_gives_the_single_image_result(model, sheets, tmp_path):
    frame = character_frames(sheets, 5, [12])
    write_video(tmp_path / "still.mkv", np.repeat(frame, 4, axis=0), codec="ffv1", pix_fmt="bgr0")
    Image.fromarray(frame[0]).save(tmp_path / "still.png")
    from_video, _ = model.appearance_code(tmp_path / "still.mkv")
    from_image, _ = model.appearance_code(tmp_path / "still.png")
    torch.testing.assert_close(from_video, from_image, rtol=0, atol=1e-5)


def test_retarget_keeps_the_pose_videos_frame_count_and_rate(tiny_checkpoint, inputs, tmp_path):
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(main, ["retarget", "-c", str(tiny_checkpoint),
                                       "-a", str(inputs / "a0.png"), "-p", str(inputs / "pose.mp4"),
                                       "-o", str(out), "--scale", "2"])
    assert result.exit_code == 0, result.output
    frames, rate, codec = decoded(out)
    assert (len(frames), rate, codec) == (7, 15, "h264")
    assert frames[0].shape == (2 * S, 2 * S, 3)
    assert "7 frames at 15 fps" in result.output


def test_a_folder_of_frames_is_a_pose_video_in_file_name_order(tiny_checkpoint, model, sheets,
                                                             tmp_path):
    frames = character_frames(sheets, 3, range(5))
    folder = tmp_path / "person"
    folder.mkdir()
    for t in reversed(range(5)):  # written in reverse: the order comes from the names
        Image.fromarray(frames[t]).save(folder / f"{t:06d}.png")
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(main, ["retarget", "-c", str(tiny_checkpoint), "-a",
                                       str(folder / "000002.png"), "-p", str(folder),
                                       "-o", str(out), "--fps", "10", "--scale", "1"])
    assert result.exit_code == 0, result.output
    assert "5 frames at 10 fps" in result.output
    assert len(decoded(out)[0]) == 5
    shown = np.concatenate(list(model.frames(folder)))
    assert np.array_equal(shown, frames.reshape(-1, S, 3))
    with pytest.warns(UserWarning, match="does not give its frame rate; writing 25"):
        assert model.retarget(folder, folder, tmp_path / "out.gif").rate == 25
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["retarget", "-c", str(tiny_checkpoint), "-a",
                                       str(folder / "000002.png"), "-p", str(empty),
                                       "-o", str(out)])
    assert result.exit_code == 2 and "folder holds no images" in result.output


def test_side_by_side_output_is_three_times_as_wide(tiny_checkpoint, inputs, tmp_path):
    result = CliRunner().invoke(main, ["retarget", "-c", str(tiny_checkpoint),
                                       "-a", str(inputs / "pose.mp4"),
                                       "-p", str(inputs / "pose.mp4"),
                                       "-o", str(tmp_path / "out.gif"),
                                       "--side-by-side", "--scale", "1"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out.gif") as gif:
        assert (gif.size, gif.n_frames) == ((3 * S, S), 7)
    assert "appearance from 7 frame(s)" in result.output


@pytest.mark.parametrize("case,message", [
    ("missing video", "missing.mp4: no such file"),
    ("corrupt video", "corrupt.mp4: not a readable video"),
    ("video without frames", "empty.avi: no frames"),
    ("text as appearance", "notes.txt: not a readable image"),
    ("unsupported output", "cannot write .webm"),
    ("output over the input", "is also an input"),
    ("still image as pose video",
     "pose.png: a still image (PNG), not a video; a video is needed here"),
    ("still image named as a video",
     "photo.mp4: a still image (JPEG), not a video; a video is needed here"),
])
def test_bad_inputs_are_one_line_errors_and_write_nothing(tiny_checkpoint, inputs, tmp_path, case,
                                                          message):
    with av.open(str(tmp_path / "empty.avi"), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width = stream.height = 32
        container.start_encoding()
    (tmp_path / "corrupt.mp4").write_bytes((inputs / "pose.mp4").read_bytes()[:300])
    (tmp_path / "notes.txt").write_text("not an image")
    Image.open(inputs / "p0.png").save(tmp_path / "pose.png")
    Image.open(inputs / "p0.png").save(tmp_path / "photo.mp4", format="JPEG")
    appearance, pose, output = inputs / "a0.png", inputs / "pose.mp4", tmp_path / "out" / "out.mp4"
    if case == "text as appearance":
        appearance = tmp_path / "notes.txt"
    elif case == "unsupported output":
        output = output.with_suffix(".webm")
    elif case == "output over the input":
        pose = output = tmp_path / "out" / "pose.mp4"
        output.parent.mkdir()
        output.write_bytes((inputs / "pose.mp4").read_bytes())
    else:
        pose = tmp_path / {"missing video": "missing.mp4", "corrupt video": "corrupt.mp4",
                           "video without frames": "empty.avi",
                           "still image as pose video": "pose.png",
                           "still image named as a video": "photo.mp4"}[case]
    result = CliRunner().invoke(main, ["retarget", "-c", str(tiny_checkpoint),
                                       "-a", str(appearance),
                                       "-p", str(pose), "-o", str(output), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert (result.output.startswith("error: ") and message in result.output
            and len(result.output.splitlines()) == 1)
    assert (not output.parent.exists()
            or [p.name for p in output.parent.iterdir()] in ([], [pose.name]))


def test_a_cut_pose_video_is_retargeted_with_a_warning_giving_both_counts(tiny_checkpoint, sheets,
                                                                          inputs, tmp_path):
    """The CLI as a user runs it (a subprocess: pytest would otherwise capture the warning)."""
    pose = tmp_path / "pose.mp4"
    declared, decodable = cut_mp4(pose, character_frames(sheets, 3, range(25)), rate=12)
    out = tmp_path / "out.mp4"
    run = subprocess.run([sys.executable, "-m", "rodi.cli", "retarget", "-c", str(tiny_checkpoint),
                          "-a", str(inputs / "a0.png"), "-p", str(pose), "-o", str(out),
                          "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines() == [f"warning: {pose} declares 25 frames but only {decodable} "
                                       "decode; the video may be cut"], run.stderr
    assert f"wrote {out}: {decodable} frames at 12 fps" in run.stdout
    frames, rate, _ = decoded(out)
    assert (len(frames), rate) == (decodable, 12)  # what decodes is used


def test_a_whole_video_that_declares_its_frames_gives_no_warning(model, inputs, tmp_path):
    from rodi.data.video import VideoWarning, probe_video

    assert probe_video(inputs / "pose.mp4").declared == 7  # the declared-count path is taken
    with warnings.catch_warnings():
        warnings.simplefilter("error", VideoWarning)
        result = model.retarget(inputs / "a0.png", inputs / "pose.mp4", tmp_path / "out.gif",
                                progress=False)
    assert result.frames == 7


def test_a_single_frame_gif_as_pose_video_is_a_still_image_but_an_animated_one_is_a_video(
        model, sheets, tmp_path):
    from rodi.data.video import StillImageError

    frames = [Image.fromarray(f) for f in character_frames(sheets, 3, [0, 10, 20])]
    frames[0].save(tmp_path / "still.gif")
    frames[0].save(tmp_path / "walk.gif", save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(StillImageError, match=r"still\.gif: a still image \(GIF\), not a video"):
        model.retarget(tmp_path / "still.gif", tmp_path / "still.gif", tmp_path / "out.gif",
                       progress=False)
    assert not (tmp_path / "out.gif").exists()
    assert model.retarget(tmp_path / "still.gif", tmp_path / "walk.gif", tmp_path / "out.gif",
                             progress=False).frames == 3


def test_a_failure_while_rendering_leaves_no_partial_video(model, inputs, tmp_path, monkeypatch):
    def fail_after_first_batch(*args, **kwargs):
        yield np.zeros((1, S, S, 3), np.uint8)
        raise RuntimeError("interrupted")

    monkeypatch.setattr(model, "retarget_frames", fail_after_first_batch)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.retarget(inputs / "a0.png", inputs / "pose.mp4", tmp_path / "out.mp4", progress=False)
    assert list(tmp_path.iterdir()) == []


# -- interpolation ---------------------------------------------------------------------------------


def test_interpolation_grid_corners_are_the_plain_transfers(model, inputs):
    a = model.prepare([inputs / "a0.png", inputs / "a1.png"])
    p = model.prepare([inputs / "p0.png", inputs / "p1.png"])
    grid = interpolate(model.network, a, p, grid_weights(4)).reshape(4, 4, 3, S, S)
    for i, j in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        plain = model.network.transfer(a[i:i + 1], p[j:j + 1])[0]
        torch.testing.assert_close(grid[3 * i, 3 * j], plain, rtol=0, atol=1e-5)


def test_interpolation_decodes_the_linear_mix_of_codes(model, inputs):
    a = model.prepare([inputs / "a0.png", inputs / "a1.png"])
    p = model.prepare([inputs / "p0.png", inputs / "p1.png"])
    mixed = interpolate(model.network, a, p, torch.tensor([[0.25, 0.5]]))
    alpha = model.network.encode_appearance(a)
    pi = model.network.encode_pose(p)[0]
    expected = model.network.decode(pi.mean(0, keepdim=True),
                                    0.75 * alpha[:1] + 0.25 * alpha[1:]).clamp(-1, 1)
    torch.testing.assert_close(mixed, expected, rtol=0, atol=1e-5)


def test_walk_is_a_closed_loop_through_the_four_corners():
    w = walk_weights(3)
    assert len(w) == 12
    corners = [tuple(v) for v in w[::3].tolist()]
    assert corners == [(0, 0), (0, 1), (1, 1), (1, 0)]
    steps = (torch.roll(w, -1, 0) - w).abs().sum(1)  # the last frame steps back to the first
    torch.testing.assert_close(steps, torch.full((12,), 1 / 3))


def test_interpolate_writes_a_grid_with_input_headers_and_a_walk(tiny_checkpoint, inputs, tmp_path):
    args = ["interpolate", "-c", str(tiny_checkpoint),
            "-a", str(inputs / "a0.png"), "-a", str(inputs / "a1.png"),
            "-p", str(inputs / "p0.png"), "-p", str(inputs / "p1.png"),
            "-o", str(tmp_path / "grid.png"), "--steps", "5", "--scale", "1",
            "--walk", str(tmp_path / "walk.mp4"), "--walk-frames", "4", "--fps", "8"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    # 5 x 5 renders and a header row and column
    assert grid.shape == (6 * (S + 2) + 2, 6 * (S + 2) + 2, 3)
    top_left_header = grid[2:2 + S, 2 + (S + 2):2 + (S + 2) + S]  # above the first column: pose 0
    assert np.array_equal(top_left_header, np.asarray(Image.open(inputs / "p0.png").convert("RGB")))
    # blank between the poses
    assert (grid[2:2 + S, 2 + 2 * (S + 2):2 + 2 * (S + 2) + S] == 255).all()
    frames, rate, _ = decoded(tmp_path / "walk.mp4")
    assert (len(frames), frames[0].shape, rate) == (16, (S, S, 3), 8)


def test_interpolate_needs_two_of_each(tiny_checkpoint, inputs, tmp_path):
    result = CliRunner().invoke(main, ["interpolate", "-c", str(tiny_checkpoint),
                                       "-a", str(inputs / "a0.png"),
                                       "-p", str(inputs / "p0.png"), "-p", str(inputs / "p1.png"),
                                       "-o", str(tmp_path / "grid.png")])
    assert result.exit_code == 2 and "give --appearance twice" in result.output

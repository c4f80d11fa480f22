import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import rodi.media as media
from rodi.cli import main
from rodi.media import VideoWriteError, video_writer


def gradient_frames(n: int, h: int = 16, w: int = 24) -> np.ndarray:
    """(n, h, w, 3) uint8 frames that all differ (GIF writers merge identical neighbours)."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i, :, :, 0] = 20 * i
        frames[i, :, i:i + 4, 1] = 255
    return frames


def test_a_gif_loops_scales_and_keeps_the_frame_time(tmp_path):
    with video_writer(tmp_path / "walk.gif", rate=20, scale=2) as write:
        write(gradient_frames(3))
        write(gradient_frames(5)[3:])
    with Image.open(tmp_path / "walk.gif") as gif:
        assert ((gif.n_frames, gif.size, gif.info["loop"], gif.info["duration"])
                == (5, (48, 32), 0, 50))


def test_writing_no_frames_is_an_error_and_leaves_no_file(tmp_path):
    with pytest.raises(VideoWriteError, match="no frames"):
        with video_writer(tmp_path / "empty.mp4", rate=10):
            pass
    assert list(tmp_path.iterdir()) == []


def test_without_an_h264_encoder_retarget_fails_in_one_line_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(media, "H264_ENCODERS", ("no-such-encoder",))
    result = CliRunner().invoke(main, ["retarget", "-c", str(tmp_path / "not-read.pt"),
                                       "-a", "a.png", "-p", "b.mp4",
                                       "-o", str(tmp_path / "out.mp4")])
    assert result.exit_code == 2, result.output
    assert "cannot encode H.264" in result.output and "write a .gif instead" in result.output
    assert list(tmp_path.iterdir()) == []

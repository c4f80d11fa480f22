"""The Python API, ``rodi.load``: inputs of every kind prepared as the command line prepares files,
results in the kind given, and the README's example as written."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rodi
from conftest import REPO, write_video
from rodi.training.state import CheckpointError


@pytest.fixture(scope="module")
def model():
    return rodi.load("humanoid", device="cpu")


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    """Two appearance and two pose PNGs from the model's held-out data."""
    folder = tmp_path_factory.mktemp("api")
    appearance, pose = model.examples(2)
    paths = []
    for name, im in [("a0", appearance[0]), ("a1", appearance[1]),
                     ("p0", pose[0]), ("p1", pose[1])]:
        im.save(folder / f"{name}.png")
        paths.append(folder / f"{name}.png")
    return paths


def as_tensor(path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1).float() / 127.5 - 1


def test_results_come_back_in_the_kind_given_and_agree(model, files):
    a, p = files[0], files[2]
    from_path = model.transfer(a, p)
    from_pil = model.transfer(Image.open(a), Image.open(p))
    from_array = model.transfer(np.array(Image.open(a)), np.array(Image.open(p)))
    from_tensor = model.transfer(as_tensor(a), as_tensor(p))
    assert isinstance(from_path, Image.Image) and from_path.size == (model.size, model.size)
    assert isinstance(from_pil, Image.Image)
    assert isinstance(from_array, np.ndarray) and from_array.shape == (model.size, model.size, 3)
    assert from_array.dtype == np.uint8
    assert from_tensor.shape == (1, 3, model.size, model.size) and from_tensor.abs().max() <= 1
    assert np.array_equal(np.array(from_path), np.array(from_pil))
    assert np.array_equal(np.array(from_path), from_array)
    as_pixels = ((from_tensor[0] + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    assert np.abs(as_pixels.astype(int) - from_array).max() <= 1


def test_the_api_renders_what_rodi_transfer_writes(model, files, tmp_path):
    out = tmp_path / "cli.png"
    subprocess.run([sys.executable, "-m", "rodi.cli", "transfer", "-c", "humanoid",
                    "-a", str(files[0]), "-p", str(files[2]), "-o", str(out), "--device", "cpu"],
                   check=True, capture_output=True)
    assert np.array_equal(np.array(Image.open(out).convert("RGB")),
                          np.array(model.transfer(files[0], files[2])))


def test_an_image_of_another_size_is_prepared_like_a_file(model, files, tmp_path):
    big = Image.open(files[0]).resize((150, 100))
    big.save(tmp_path / "big.png")
    assert np.array_equal(np.array(model.transfer(big, files[2])),
                          np.array(model.transfer(tmp_path / "big.png", files[2])))
    prepared = model.prepare(torch.from_numpy(np.array(big)).permute(2, 0, 1).float() / 127.5 - 1)
    assert prepared.shape == (1, 3, model.size, model.size)


def test_batches_pair_up_and_a_single_side_broadcasts(model, files):
    a, p = [files[0], files[1]], [files[2], files[3]]
    pairs = model.transfer(a, p)
    assert isinstance(pairs, list) and len(pairs) == 2
    alone = np.array(model.transfer(files[1], files[3])).astype(int)
    # batched: equal up to rounding
    assert np.abs(np.array(pairs[1]).astype(int) - alone).max() <= 1
    assert len(model.transfer(files[0], p)) == 2
    with pytest.raises(ValueError, match="equal numbers"):
        model.transfer(a + [files[0]], p)


def test_codes_decode_to_the_transfer(model, files):
    pose = model.encode_pose(files[2])
    appearance = model.encode_appearance(files[0])
    c = model.config.model
    assert pose.shape == (1, c.code_channels, c.code_size, c.code_size) == appearance.shape
    decoded = model.decode(pose, appearance)
    assert torch.allclose(decoded, model.transfer(as_tensor(files[0]), as_tensor(files[2])),
                          atol=1e-5)


def test_interpolate_gives_a_grid_whose_corners_are_transfers(model, files):
    grid = model.interpolate([files[0], files[1]], [files[2], files[3]], steps=3)
    assert len(grid) == 3 and all(len(row) == 3 for row in grid)
    # equal up to rounding: batches of other sizes may sum in another order
    for (i, j), (a, p) in {(0, 2): (files[0], files[3]), (2, 0): (files[1], files[2])}.items():
        corner = np.array(grid[i][j]).astype(int) - np.array(model.transfer(a, p)).astype(int)
        assert np.abs(corner).max() <= 1
    cells = model.interpolate(torch.stack([as_tensor(files[0]), as_tensor(files[1])]),
                              torch.stack([as_tensor(files[2]), as_tensor(files[3])]), steps=4)
    assert cells.shape == (4, 4, 3, model.size, model.size)
    with pytest.raises(ValueError, match="two appearance and two pose"):
        model.interpolate([files[0]], [files[2], files[3]])


def test_retarget_writes_a_video_of_the_pose_videos_length(model, files, tmp_path):
    frames = np.stack([np.array(Image.open(files[2 + i % 2])) for i in range(6)])
    video = tmp_path / "pose.mkv"
    write_video(video, frames, codec="ffv1", pix_fmt="bgr0")
    result = model.retarget(files[0], video, tmp_path / "out.gif")
    assert result.frames == 6 and result.path.is_file()


def test_bad_inputs_say_what_is_wrong(model, files):
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        model.transfer(np.zeros((8, 8), np.float32), files[2])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model.transfer(torch.full((3, 64, 64), 255.0), files[2])
    with pytest.raises(TypeError, match="not int"):
        model.transfer(3, files[2])
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.transfer(torch.full((3, 64, 64), float("nan")), files[2])
    with pytest.raises(ValueError, match="H, W > 0"):
        model.transfer(np.zeros((0, 64, 3), np.uint8), files[2])
    with pytest.raises(ValueError, match="equal numbers"):
        model.decode(torch.zeros(3, 16, 8, 8), torch.zeros(2, 16, 8, 8))
    with pytest.raises(CheckpointError, match="shipped models: humanoid"):
        rodi.load("no-such-model")
    from rodi.config import ConfigError

    with pytest.raises(ConfigError, match="use auto, cpu, cuda or cuda:N"):
        rodi.load("humanoid", device="gpu")


def test_a_single_image_gives_a_single_result_and_tensors_stay_batched(model, files):
    one = model.transfer(Image.open(files[0]), as_tensor(files[2]))
    assert isinstance(one, Image.Image)
    assert (model.transfer(as_tensor(files[0]), as_tensor(files[2])).shape
            == (1, 3, model.size, model.size))


def test_the_readme_python_example_runs_as_written(tmp_path):
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "the README has a Python example"
    subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, check=True, timeout=300)
    assert list(Path(tmp_path).glob("*.png"))

"""Hostile input, each built here: it ends in a clear error or a counted skip, never a traceback
from deep inside a library, and never a corrupted output."""

import errno
import os
import warnings

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import tiny_overrides
from rodi.cli import main
from rodi.data.folders import IdentityFolder, PairDataWarning
from rodi.data.images import ImageReadError, load_image
from rodi.training.state import TrainState, atomic_save, read_checkpoint


def _png_bomb(path, side=40_000):
    """A few kilobytes of PNG that declare side x side pixels (1.6 G pixels)."""
    Image.new("1", (side, side)).save(path, optimize=True)


def test_a_png_bomb_is_refused_by_name(tmp_path):
    _png_bomb(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 1_000_000
    with pytest.raises(ImageReadError, match="bomb.png"):
        load_image(tmp_path / "bomb.png", 64)


def test_a_png_bomb_and_an_animated_gif_in_a_data_folder(tmp_path):
    for who in ("a", "b", "c"):
        (tmp_path / who).mkdir()
        for j in range(2):
            Image.new("RGB", (30, 30), (40 * j, 80, 120)).save(tmp_path / who / f"{j}.png")
    _png_bomb(tmp_path / "a" / "bomb.png")
    frames = [Image.new("P", (24, 24), i) for i in range(3)]
    frames[0].save(tmp_path / "b" / "walk.gif", save_all=True, append_images=frames[1:])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = IdentityFolder(tmp_path, image_size=16, cache_dir=tmp_path / "cache", progress=False,
                                validation_fraction=0.34)
    skipped = dict(source.summary()["skipped"])
    assert [os.path.basename(p) for p in skipped] == ["bomb.png"]  # the GIF's first frame is used
    assert any(issubclass(w.category, PairDataWarning) and "bomb.png" in str(w.message) for w in caught)
    assert source.summary()["images"] == 7


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"format_version": 1, "x": torch.ones(3)}, path)
    before = path.read_bytes()

    def full_disk(obj, f, *a, **k):
        f.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        atomic_save({"format_version": 1, "x": torch.zeros(3)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.pt"]  # no temporary file left behind


def test_a_full_disk_during_training_is_one_line_and_the_run_resumes(tmp_path, monkeypatch):
    from rodi.training import state as state_module

    runner = CliRunner()
    overrides = tiny_overrides(tmp_path, **{"train.max_steps": 6})
    assert runner.invoke(main, ["train", "sprites", *tiny_overrides(tmp_path), "--no-progress"]).exit_code == 0
    real_save = state_module.atomic_save
    monkeypatch.setattr(state_module, "atomic_save",
                        lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device",
                                                                      str(a[1]))))
    result = runner.invoke(main, ["train", "--resume", str(tmp_path / "run"), "train.max_steps=6", "--no-progress"])
    assert result.exit_code == 2 and "No space left on device" in result.output, result.output
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 4
    monkeypatch.setattr(state_module, "atomic_save", real_save)
    result = runner.invoke(main, ["train", "--resume", str(tmp_path / "run"), *overrides[-0:0],
                                  "train.max_steps=6", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert TrainState.from_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt").step == 6


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("in the way")
    result = CliRunner().invoke(main, ["train", "sprites", *tiny_overrides(tmp_path),
                                       f"train.out_dir={blocker / 'run'}", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "a file" in result.output and "Traceback" not in result.output


def test_a_pickle_with_code_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"format_version": 1, "x": Evil()}))
    result = CliRunner().invoke(main, ["evaluate", "-c", str(tmp_path / "evil.pt")])
    assert result.exit_code == 2
    assert "refuses to unpickle" in result.output or "not a readable" in result.output
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=1", "batch_size must be >= 2"),
    ("model.image_size=48", "image_size must be"),
    ("trian.max_steps=3", "did you mean 'train'"),
    ("train.max_stepz=3", "did you mean 'train.max_steps'"),
    ("train.max_steps=many", "train.max_steps"),
    ("data.root=/no/such/folder", "does not exist"),
])
def test_configuration_errors_are_caught_before_anything_is_written(tmp_path, override, message):
    result = CliRunner().invoke(main, ["train", "sprites", *tiny_overrides(tmp_path), override])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_written_on_a_gpu_machine_loads_on_the_cpu(tmp_path):
    from rodi.config import load_config
    from rodi.training.loop import checkpoint_path, train

    train(load_config("sprites", tiny_overrides(tmp_path)), progress=False)
    state = torch.load(checkpoint_path(tmp_path / "run"), weights_only=True)
    state["config"]["train"]["device"] = "cuda"  # as saved by a run on a GPU
    torch.save(state, tmp_path / "gpu.pt")
    loaded = TrainState.from_checkpoint(tmp_path / "gpu.pt")
    assert loaded.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["transfer", "-c", str(tmp_path / "gpu.pt"), "-a", str(tmp_path / "a.png"),
                                       "-p", str(tmp_path / "a.png"), "-o", str(tmp_path / "o.png")])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("text, where", [("train:\n  batch_size: [1, {\n", "line 3"),
                                         ("train:\n  a: b: c\n", "line 2, column 7")])
def test_a_config_file_with_a_yaml_syntax_error_is_one_clear_error(tmp_path, text, where):
    from rodi.config import ConfigError, load_config

    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=f"bad.yaml: not valid YAML \\({where}") as err:
        load_config(str(bad))
    assert "\n" not in str(err.value)

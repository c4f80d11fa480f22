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
        source = IdentityFolder(tmp_path, image_size=16, cache_dir=tmp_path / "cache",
                                progress=False, validation_fraction=0.34)
    skipped = dict(source.summary()["skipped"])
    assert [os.path.basename(p) for p in skipped] == ["bomb.png"]  # the GIF's first frame is used
    assert any(issubclass(w.category, PairDataWarning) and "bomb.png" in str(w.message)
               for w in caught)
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
    assert runner.invoke(main, ["train", "sprites", *tiny_overrides(tmp_path),
                                "--no-progress"]).exit_code == 0
    real_save = state_module.atomic_save
    monkeypatch.setattr(state_module, "atomic_save",
                        lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC,
                                                                      "No space left on device",
                                                                      str(a[1]))))
    result = runner.invoke(main, ["train", "--resume", str(tmp_path / "run"), "train.max_steps=6",
                                  "--no-progress"])
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
    result = CliRunner().invoke(main, ["transfer", "-c", str(tmp_path / "gpu.pt"),
                                       "-a", str(tmp_path / "a.png"), "-p", str(tmp_path / "a.png"),
                                       "-o", str(tmp_path / "o.png")])
    assert result.exit_code == 0, result.output


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs": each anchored list holds ``width`` aliases of the one before, so
    ``levels`` short lines expand to ``width ** levels`` strings."""
    lines = ["train:", f"  l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _train_with_config(tmp_path, content: bytes) -> tuple[str, str]:
    """``rodi train FILE`` with the tiny overrides (whose ``train.out_dir`` is ``tmp_path/run``):
    the config file's path as given and the command's output, after checking what every refused
    config file must give: exit status 2, one line, no traceback and no run folder."""
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    result = CliRunner().invoke(main, ["train", str(path), *tiny_overrides(tmp_path),
                                       "--no-progress"])
    assert result.exit_code == 2, result.output
    assert len(result.output.splitlines()) == 1 and "Traceback" not in result.output, result.output
    assert isinstance(result.exception, SystemExit)  # the CLI's own exit, not an escaped exception
    assert not (tmp_path / "run").exists()
    return str(path), result.output


@pytest.mark.parametrize("content, line, message", [
    (b"train:\n  batch_size: [1, {\n", 3,
     "not valid YAML: expected the node content, but found '<stream end>'"),
    (b"train:\n  a: b: c\n", 2, "not valid YAML: mapping values are not allowed here (column 7)"),
    (b"train:\n  seed: 1\n  seed: 2\n", 3, "not valid YAML: found duplicate key seed"),
    (b"- train\n- model\n", 1, "the file holds a list, not a mapping of sections (data:, model:"),
    (b"just words\n", 1, "the file holds a single value, not a mapping of sections"),
    (b"model:\n  channels: 8\ntrain: 3\n", 3,
     "section train: is a single value; it must be a mapping"),
    (b"train:\n  seed: !!python/object:os.system\n    a: 1\n", 2,
     "unknown tag !!python/object:os.system: a config file holds plain values"),
    (b"model:\n  channels: !foo 8\n", 2, "unknown tag !foo"),
    (_alias_bomb().encode(), 6,
     "too many aliases: expanded, the file would hold more than 10000 values"),
    (b"train: &t\n  seed: *t\n", 2, "the alias *t is inside the value it names (a cycle)"),
    (b"\xff\xfe model: 3\n", 1, "not UTF-8 text: byte 0xff at offset 0 of the file (it starts with "
                                "a UTF-16 byte-order mark); save it as UTF-8"),
    (b"train:\n  seed: 1\n  out_dir: caf\xe9\n", 3,
     "not UTF-8 text: byte 0xe9 at offset 31 of the file"),
    (b"train:\n  seed: 1\n  nul: \x00\n", 3, "character #x0000 is not allowed in YAML"),
    (b"train:\n  batch_size: 3\n  max_stepz: 3\n", 3,
     "unknown key 'train.max_stepz'; did you mean 'train.max_steps'?"),
])
def test_a_malformed_config_file_is_one_line_naming_the_file_and_line(tmp_path, content, line,
                                                                      message):
    path, output = _train_with_config(tmp_path, content)
    assert output.startswith(f"error: {path} line {line}: "), output
    assert message in output, output


def test_a_config_file_with_words_where_numbers_belong_is_one_line(tmp_path):
    path, output = _train_with_config(tmp_path, b"optim:\n  betas: [0.5, many]\n")
    assert output == "error: optim.betas must be two numbers in [0, 1)\n"


def test_a_config_file_cannot_run_code_through_a_python_tag(tmp_path):
    pwned = tmp_path / "pwned"
    content = f"train:\n  seed: !!python/object/apply:os.system ['echo pwned > {pwned}']\n"
    path, output = _train_with_config(tmp_path, content.encode())
    assert output.startswith(f"error: {path} line 2: "
                             "unknown tag !!python/object/apply:os.system"), output
    assert not pwned.exists()


def test_an_alias_bomb_is_refused_in_bounded_memory(tmp_path, monkeypatch):
    """9 ** 30 strings once expanded: refused while the aliases are read, whatever limit OmegaConf
    itself has (here switched off, as OMEGACONF_MAX_YAML_EXPANDED_NODES=none does)."""
    import tracemalloc

    from rodi.config import ConfigError, load_config

    monkeypatch.setenv("OMEGACONF_MAX_YAML_EXPANDED_NODES", "none")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_alias_bomb(levels=30))
    assert bomb.stat().st_size < 2_000
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=r"bomb\.yaml line 6: too many aliases"):
            load_config(str(bomb))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, peak  # expanded, the file would hold 9**30 values


def test_a_config_file_over_the_size_limit_is_refused_unparsed(tmp_path):
    from rodi.config import MAX_CONFIG_BYTES

    content = b"train:\n" + b"  # padding\n" * (MAX_CONFIG_BYTES // 12 + 1)
    path, output = _train_with_config(tmp_path, content)
    assert output.startswith(f"error: {path}: larger than 1 MB"), output

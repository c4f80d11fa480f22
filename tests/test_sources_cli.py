"""The CLI on every kind of data: a folder of identities with --data, the mocap humanoid with
labels and keypoints, data inspection, and exported safetensors models."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import tiny_overrides
from rodi.atomic import NEW_FILE_MODE
from rodi.cli import main


def _identity_folder(root, identities=4, images=5):
    rng = np.random.default_rng(0)
    for i in range(identities):
        colour = rng.integers(0, 255, 3)
        (root / f"person {i}").mkdir(parents=True)
        for j in range(images):
            img = np.zeros((48, 40, 3), np.uint8)
            img[5 + 3 * j: 25 + 3 * j, 8:30] = colour  # same colour, moving box: appearance vs pose
            Image.fromarray(img).save(root / f"person {i}" / f"frame{j}.png")
    (root / "README.txt").write_text("not an image")
    return root


def _folder_overrides(tmp_path):
    drop = ("data.root=", "data.num_triplets=")
    return [o for o in tiny_overrides(tmp_path) if not o.startswith(drop)] + [
        "data.num_triplets=8", "data.validation_fraction=0.25"]


def test_train_and_evaluate_on_a_folder_of_identities(tmp_path):
    data = _identity_folder(tmp_path / "my data")
    runner = CliRunner()
    result = runner.invoke(main, ["train", *_folder_overrides(tmp_path), "--data", str(data),
                                  "--no-progress"])
    assert result.exit_code == 0, result.output
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    result = runner.invoke(main, ["evaluate", "-c", str(ckpt)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "reports" / "step-0000004"
                          / "metrics.json").read_text())
    assert metrics["source"] == "folder" and metrics["transfer_target"] == "pairs"
    assert metrics["num_triplets"] == 8 and np.isfinite(metrics["triplet_mse"]["mean"])
    # no labels, MI still
    assert "probes" not in metrics and np.isfinite(metrics["posthoc_mi_nats"])
    # no judge
    assert "pose_accuracy" not in metrics and 0 < metrics["image_quality"]["ssim"]["mean"] <= 1


def test_a_folder_with_one_identity_is_a_clear_error_and_leaves_no_run(tmp_path):
    data = _identity_folder(tmp_path / "one", identities=1)
    result = CliRunner().invoke(main, ["train", *_folder_overrides(tmp_path), "--data", str(data)])
    assert result.exit_code == 2
    assert "identit" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def mocap_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mocap")
    overrides = [o for o in tiny_overrides(tmp) if not o.startswith("data.root=")] + [
        "data.source=mocap", "data.frame_stride=60", "data.yaws=2", "model.image_size=32"]
    result = CliRunner().invoke(main, ["train", *overrides, "--no-progress"])
    assert result.exit_code == 0, result.output
    return tmp / "run"


def test_mocap_evaluation_has_exact_triplets_and_probes(mocap_run):
    result = CliRunner().invoke(main, ["evaluate",
                                       "-c", str(mocap_run / "checkpoints" / "last.pt")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((mocap_run / "reports" / "step-0000004" / "metrics.json").read_text())
    assert metrics["transfer_target"] == "triplets"
    assert set(metrics["pose_accuracy"]) >= {"pck@0.05", "pck@0.1", "pixel_error", "action"}
    assert set(metrics["appearance_retention"]) >= {"skin", "scale", "mean"}
    assert {"skin", "shirt", "background", "scale"} <= set(metrics["probes_per_label"]["pose_code"])
    assert 0 <= metrics["probes"]["pose_to_appearance"] <= 1


def test_export_gives_a_safetensors_model_that_transfer_accepts(mocap_run, tmp_path):
    runner = CliRunner()
    model = tmp_path / "model.safetensors"
    result = runner.invoke(main, ["export", "-c", str(mocap_run / "checkpoints" / "last.pt"),
                                  "-o", str(model)])
    assert result.exit_code == 0, result.output
    assert model.stat().st_mode & 0o777 == NEW_FILE_MODE  # as any new file, not owner-only
    result = runner.invoke(main, ["evaluate", "-c", str(model)])
    assert (result.exit_code == 2 and "exported model" in result.output
            and "evaluating:" not in result.output)
    Image.fromarray(np.full((50, 50, 3), 90, np.uint8)).save(tmp_path / "a.png")
    result = runner.invoke(main, ["transfer", "-c", str(model), "-a", str(tmp_path / "a.png"),
                                  "-p", str(tmp_path / "a.png"), "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out.png").size == (32, 32)
    model.write_bytes(model.read_bytes()[:100])
    result = runner.invoke(main, ["transfer", "-c", str(model), "-a", str(tmp_path / "a.png"),
                                  "-p", str(tmp_path / "a.png"), "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 2 and "model.safetensors" in result.output


def test_data_inspect_writes_a_contact_sheet(tmp_path):
    data = _identity_folder(tmp_path / "data")
    Image.new("RGB", (10, 10)).save(tmp_path / "data" / "person 0" / "x.png")
    (tmp_path / "data" / "person 1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "sheet.png"
    result = CliRunner().invoke(main, ["data", "inspect", str(data), "-o", str(out), "--pairs", "4",
                                       "--image-size", "32",
                                       f"data.cache_dir={tmp_path / 'cache'}"])
    assert result.exit_code == 0, result.output
    assert "broken.jpg" in result.output
    assert Image.open(out).size == (2 * 32 + 6, 4 * 34 + 2)


def test_data_names_the_run_folder_after_the_data(tmp_path):
    from rodi.cli import _overrides

    (tmp_path / "people" / "alice").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "people" / "alice" / "0.png")
    (tmp_path / "people" / "index.csv").write_text("identity,path\nalice,alice/0.png\n")
    for data, run in (("mocap", "mocap"), (str(tmp_path / "people"), "people"),
                      (str(tmp_path / "people" / "index.csv"), "people")):
        assert _overrides((), None, data)[0] == f"train.out_dir=runs/{run}"
    assert "train.out_dir=runs/people" not in _overrides(("train.out_dir=x",), None,
                                                          str(tmp_path / "people"))

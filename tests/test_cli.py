import base64
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import tiny_overrides
from rodi.cli import main
from rodi.config import ConfigError


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    result = CliRunner().invoke(main, ["train", "sprites", *tiny_overrides(tmp), "--no-progress"])
    assert result.exit_code == 0, result.output
    return tmp / "run"


def test_transfer_accepts_rgba_and_grayscale_images(trained_run, tmp_path):
    rgba = np.zeros((40, 30, 4), np.uint8)
    rgba[10:30, 5:25] = (200, 50, 20, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "app.png")
    Image.fromarray(np.full((64, 64), 128, np.uint8), "L").save(tmp_path / "pose.png")
    result = CliRunner().invoke(main, ["transfer",
                                       "-c", str(trained_run / "checkpoints" / "last.pt"),
                                       "--appearance", str(tmp_path / "app.png"),
                                       "--pose", str(tmp_path / "pose.png"),
                                       "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 0, result.output
    out = Image.open(tmp_path / "out.png")
    assert out.size == (64, 64) and out.mode == "RGB"


def test_transfer_matrix_from_a_folder(trained_run, tmp_path, sheets):
    import torch

    from rodi.viz import to_uint8

    folder = tmp_path / "inputs"
    folder.mkdir()
    imgs = to_uint8(sheets.render(torch.tensor([0, 1, 2]), torch.tensor([0, 10, 20])))
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(folder / f"{i}.png")
    result = CliRunner().invoke(main, ["transfer",
                                       "-c", str(trained_run / "checkpoints" / "last.pt"),
                                       "-a", str(folder), "-p", str(folder / "0.png"),
                                       "-p", str(folder / "1.png"),
                                       "-o", str(tmp_path / "grid.png"), "--matrix"])
    assert result.exit_code == 0, result.output
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (3 * 66 + 2, 4 * 66 + 2)  # (1 + 2 poses) columns, (1 + 3 appearances) rows


def test_transfer_of_a_corrupt_image_names_the_file(trained_run, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not")
    result = CliRunner().invoke(main, ["transfer",
                                       "-c", str(trained_run / "checkpoints" / "last.pt"),
                                       "-a", str(tmp_path / "broken.png"),
                                       "-p", str(tmp_path / "broken.png"),
                                       "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 2
    assert "broken.png" in result.output and "not a readable image" in result.output


def test_evaluate_writes_a_report_folder_and_prints_a_table(trained_run, tmp_path):
    result = CliRunner().invoke(main, ["evaluate",
                                       "-c", str(trained_run / "checkpoints" / "last.pt"),
                                       "-o", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "report.html").is_file()
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert (metrics["protocol"] == "sprites" and metrics["step"] == 4
            and metrics["num_triplets"] == 16)
    assert (0 < metrics["triplet_mse"]["mean"] <= 4
            and 0 < metrics["reconstruction_mse"]["mean"] <= 4)
    assert "transfer MSE (16 held-out triplets)" in result.output
    # sprites: labels, no keypoints
    assert set(metrics["pose_accuracy"]) == {"action", "direction", "frame"}
    assert 0 <= metrics["appearance_retention"]["mean"]["ceiling"] <= 1


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.figcaptions, self.tables, self.text = [], [], 0, 0, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.images += [a] if tag == "img" else []
        self.links += [a["href"]] if tag == "a" else []
        self.figcaptions += tag == "figcaption"
        self.tables += tag == "table"

    def handle_data(self, data):
        self.text.append(data)


def test_the_html_report_opens_and_names_every_figure_it_links(trained_run, tmp_path):
    result = CliRunner().invoke(main, ["evaluate",
                                       "-c", str(trained_run / "checkpoints" / "last.pt"),
                                       "-o", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    page = _Page()
    page.feed((tmp_path / "report" / "report.html").read_text(encoding="utf-8"))
    names = {"transfer matrix", "interpolation", "training curves"}
    assert ({img["alt"].split(":")[0] for img in page.images} == names
            and page.figcaptions == len(names))
    for img in page.images:
        assert (base64.b64decode(img["src"].removeprefix("data:image/png;base64,"))[:8]
                == b"\x89PNG\r\n\x1a\n")
    assert (len(page.links) == len(names)
            and all((tmp_path / "report" / link).is_file() for link in page.links))
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    text = " ".join(page.text)
    assert page.tables >= 4 and f"{metrics['triplet_mse']['mean']:.4f}" in text
    assert f"{metrics['appearance_retention']['mean']['ceiling']:.4f}" in text


def test_resume_from_the_command_line(trained_run):
    result = CliRunner().invoke(main, ["train", "--resume", str(trained_run), "train.max_steps=6",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "trained to step 6 in" in result.output and "last.pt" in result.output
    metrics = CliRunner().invoke(main, ["evaluate",
                                        "-c", str(trained_run / "checkpoints" / "last.pt")])
    assert "step" in metrics.output and " 6" in metrics.output


def test_cli_reports_config_errors_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["train", "sprites", "train.batch_size=1",
                                       f"train.out_dir={tmp_path / 'x'}"])
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert not (tmp_path / "x").exists()


def test_benchmark_runs_every_variant_and_writes_every_file(tmp_path):
    from rodi.config import VARIANTS

    out = tmp_path / "bench"
    args = ["benchmark", "sprites", *tiny_overrides(tmp_path), "--variants", ",".join(VARIANTS),
            "--budget", "3steps", "--out-dir", str(out), "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for name in ("results.md", "results.csv", "results.json", "triplet_mse_violins.png",
                 "transfer_matrices.png", "rodi_training_curves.png"):
        assert (out / name).is_file(), name
    rows = json.loads((out / "results.json").read_text())["results"]
    assert [r["variant"] for r in rows] == list(VARIANTS)
    assert all(r["step"] == 3 and r["triplet_mse_mean"] > 0 and r["posthoc_mi_nats"] is not None
               for r in rows)
    # the report's metrics
    assert all(0 < r["ssim_mean"] <= 1 and 0 <= r["appearance_retention"] <= 1 for r in rows)
    assert "| *ceiling* |" in result.output and "| *floor* |" in result.output
    for v in VARIANTS:
        assert ((out / v / "report" / "report.html").is_file()
                and (out / v / "report" / "transfer_matrix.png").is_file())
    # a rerun finds every variant done and only rewrites the comparison
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "| rodi | 3 |" in again.output


def test_budget_parsing():
    from rodi.evaluation.benchmark import budget_overrides

    assert budget_overrides("10m") == ["train.max_minutes=10.0", "train.max_steps=100000000"]
    assert budget_overrides("90s")[0] == "train.max_minutes=1.5"
    assert budget_overrides("5000steps") == ["train.max_steps=5000", "train.max_minutes=null"]
    with pytest.raises(ConfigError, match="budget"):
        budget_overrides("ten minutes")

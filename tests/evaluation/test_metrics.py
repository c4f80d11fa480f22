"""One table of metrics (rodi.evaluation.metrics): every key the report writes has an entry; the
printed table, the HTML page and the benchmark take their labels from it and print what they
printed before; the evaluation's seeds come from ``cfg.evaluation``."""

import dataclasses

import pytest
import torch

from conftest import tiny_overrides
from rodi.config import EvaluationConfig, load_config
from rodi.evaluation import benchmark, html, metrics, report
from rodi.evaluation.judges import summarize_judged
from rodi.training.state import TrainState

# a complete report, every section present, with numbers that exercise every format
REPORT = {
    "checkpoint": "runs/x/checkpoints/last.pt", "source": "mocap", "protocol": "mocap",
    "transfer_target": "triplets", "variant": "rodi", "step": 1200, "train_seconds": 754.3,
    "num_triplets": 8000, "triplet_seed": 0,
    "triplet_mse": {"mean": 0.0123456, "median": 0.0101, "std": 0.00456},
    "reconstruction_mse": {"mean": 0.00812, "median": 0.0075, "std": 0.0031},
    "image_quality": {"ssim": {"mean": 0.81234, "median": 0.82, "std": 0.05},
                      "psnr_db": {"mean": 23.4567, "median": 23.1, "std": 1.5}},
    "gamma": 0.00123456, "lambda": 12.3456, "epsilon": 0.05,
    "pose_accuracy": {
        "pck@0.05": {"transfer": 0.5, "ceiling": 0.8, "floor_input": 0.2, "floor_mean_image": 0.1,
                     "floor_average_body": 0.25, "floor": 0.25, "normalised": 0.45},
        "pixel_error": {"transfer": 3.25, "ceiling": 1.5, "floor_input": 7.0,
                        "floor_mean_image": 6.5, "floor_average_body": 6.0, "floor": 6.0,
                        "normalised": 0.6111},
        "action": {"transfer": 0.7, "ceiling": 0.7, "floor_input": 0.7, "floor_mean_image": 0.7,
                   "floor_average_body": 0.7, "floor": 0.7, "normalised": None},
    },
    "appearance_retention": {
        "shirt": {"transfer": 0.9, "ceiling": 0.95, "floor_input": 0.2, "floor_mean_image": 0.3,
                  "floor_average_body": 0.3, "floor": 0.3, "normalised": 0.923},
        "mean": {"transfer": 0.9, "ceiling": 0.95, "floor_input": 0.2, "floor_mean_image": 0.3,
                 "floor_average_body": 0.3, "floor": 0.3, "normalised": 0.923},
    },
    "normalised": {"pose": 0.45, "pose_labels": None, "appearance": 0.923},
    "judge_train_steps": 6000,
    "judge": {"origin": "shipped", "fingerprint": "053bcc07cfc6966f", "train_steps": 6000},
    "probes": {k: v for i, c in enumerate(("pose", "pose_mean", "appearance"))
               for j, g in enumerate(("appearance", "pose"))
               for k, v in ((f"{c}_to_{g}", 0.1 * (2 * i + j + 1)),
                            (f"{c}_to_{g}_chance", 0.05 * (j + 1)))},
    "posthoc_mi_nats": 0.01234, "posthoc_mi_mean_nats": 0.5678,
    "evaluation_seconds": {"judge": 1.0}, "images_per_s": 345.6,
}

# a report of user data whose identities are clips: FOMM's protocol and the appearance judge
_OUTPUTS = {"transfer": 0.25, "first_frame": 0.5, "mean_frame": 0.375}
_CROSS = {"transfer": 0.4, "appearance_copied": 0.125, "pose_copied": 0.5,
          "self_reconstruction": 0.3}
ORDERED = {
    **{k: v for k, v in REPORT.items() if k not in ("pose_accuracy", "appearance_retention",
                                                    "normalised", "judge", "judge_train_steps")},
    "source": "folder", "protocol": "folder", "transfer_target": "pairs",
    "fomm": {"clips": 13, "frames": 487, "image_size": 64,
             **{k: dict(_OUTPUTS) for k in ("l1", "mse", "ssim", "psnr_db", "aed")}},
    "appearance_judge": {"origin": "cache", "fingerprint": "86f0ecadf8f312dd", "train_steps": 400,
                         "train_identities": 33, "identities": 13, "frames": 432, "top1": 0.69,
                         "top1_chance": 1 / 13, "same_distance": 0.108,
                         "different_distance": 0.55, "auc": 0.967},
    "appearance_distance": {"pairs": 1000, "to_appearance": dict(_CROSS),
                            "to_pose": {**_CROSS, "pose_copied": 0.0}, "normalised": 0.2667},
    "keypoints": {"detector": "MediaPipe Pose full", "joints": 17, "image_size": [64, 64],
                  "distance": "l1", "pose_frames": 500, "pose_frames_with_joints": 310,
                  "joints_per_pose_frame": 9.5, "pairs": 500, "split": "test",
                  "akd_px": {"appearance_copied": 4.1, "mean_frame": None, "transfer": 4.97,
                             "self_reconstruction": 4.01, "pose_round_trip": 10.29},
                  "mkr": {"appearance_copied": 0.371, "mean_frame": 1.0, "transfer": 0.75,
                          "self_reconstruction": 0.703, "pose_round_trip": 0.942},
                  "akd_items": {"appearance_copied": 213, "mean_frame": 0, "transfer": 94,
                                "self_reconstruction": 109, "pose_round_trip": 30}},
}

# what the printed table and results.md said before the table existed (byte for byte)
TABLE_BEFORE = """\
protocol                                                    mocap
variant                                                     rodi
step                                                        1200
training time                                               12.6 min
transfer MSE (8000 held-out triplets)                       mean 0.0123  median 0.0101  std 0.0046
self-reconstruction MSE                                     mean 0.0081  median 0.0075  std 0.0031
gamma / lambda                                              0.001235 / 12.35
transfer SSIM / PSNR                                        0.8123 / 23.46 dB
judge                                                       shipped (6000 steps; \
renders 053bcc07cfc6966f)
pose: pck@0.05 (floor / transfer / ceiling; normalised)     0.250 / 0.500 / 0.800; 0.450
pose: pixel_error (floor / transfer / ceiling; normalised)  6.000 / 3.250 / 1.500; 0.611
pose: action (floor / transfer / ceiling; normalised)       0.700 / 0.700 / 0.700; n/a
appearance: shirt (floor / transfer / ceiling; normalised)  0.300 / 0.900 / 0.950; 0.923
appearance: mean (floor / transfer / ceiling; normalised)   0.300 / 0.900 / 0.950; 0.923
normalised pose / appearance                                0.450 / 0.923
probe: pose sample -> appearance (leak)                     accuracy 0.100  (chance 0.050)
probe: pose mean -> appearance (leak)                       accuracy 0.300  (chance 0.050)
probe: appearance code -> pose (leak)                       accuracy 0.600  (chance 0.100)
probe: appearance code -> appearance                        accuracy 0.500  (chance 0.050)
probe: pose sample -> pose                                  accuracy 0.200  (chance 0.100)
probe: pose mean -> pose                                    accuracy 0.400  (chance 0.100)
post-hoc MI(pose sample; appearance)                        0.012 nats
post-hoc MI(pose mean; appearance)                          0.568 nats"""
HEADERS_BEFORE = [
    "| variant | steps | triplet MSE mean | median | std | self-rec. MSE "
    "| pose->app. (sample / mean) | app.->pose | app.->app. | pose->pose (sample / mean) "
    "| post-hoc MI (sample / mean) | final gamma | images/s |",
    "| variant | SSIM | PSNR | PCK@0.05 | PCK@0.1 | keypoint error (px) | pose labels "
    "| appearance retention | normalised pose | normalised appearance "
    "| normalised app. (self-rec.) |",
]
COLUMNS_BEFORE = (
    "variant", "step", "train_minutes", "triplet_mse_mean", "triplet_mse_median", "triplet_mse_std",
    "reconstruction_mse_mean", "ssim_mean", "psnr_db_mean", "pose_pck@0.05", "pose_pck@0.1",
    "pose_pixel_error", "pose_label_accuracy", "appearance_retention", "normalised_pose",
    "normalised_appearance", "normalised_appearance_self_reconstruction", "pose_to_appearance",
    "pose_to_appearance_chance",
    "pose_mean_to_appearance", "appearance_to_pose", "appearance_to_pose_chance",
    "appearance_to_appearance", "pose_to_pose", "pose_mean_to_pose", "posthoc_mi_nats",
    "posthoc_mi_mean_nats", "final_gamma", "images_per_s",
)


def leaves(tree: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the values in a nested dict."""
    out = []
    for k, v in tree.items():
        out += leaves(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [prefix + k]
    return out


def outputs(m: dict, folder) -> dict[str, str]:
    """What the three consumers write of the report ``m``: the printed table, the page,
    results.md."""
    html.write_html(m, [], folder / "report.html")
    benchmark._write_tables([benchmark._row(m)], folder, "10m", benchmark._bounds(m))
    return {"table": report.format_table(m),
            "html": (folder / "report.html").read_text(encoding="utf-8"),
            "md": (folder / "results.md").read_text()}


@pytest.fixture(scope="module")
def evaluated(humanoid, tmp_path_factory):
    """``evaluate_state`` of an untrained tiny model on the small humanoid (keypoints, labels, a
    judge): every section of the report, and the state and config behind it."""
    tmp = tmp_path_factory.mktemp("metrics")
    cfg = load_config("demo", tiny_overrides(tmp, **{"data.frame_stride": 40, "data.yaws": 2}))
    torch.manual_seed(0)
    state = TrainState(cfg, torch.device("cpu"))
    return report.evaluate_state(state, humanoid, progress=False)[0], state


def test_every_key_the_report_produces_has_an_entry_in_the_table(evaluated):
    produced, _ = evaluated
    # evaluate_checkpoint's and the benchmark's
    produced = {"checkpoint": "x.pt", **produced, "images_per_s": 1.0}
    assert {"pose_accuracy", "appearance_retention", "probes", "posthoc_mi_nats",
            "judge"} <= set(produced)
    keys = {m.key for m in metrics.METRICS}
    for path in leaves(produced):
        metrics.metric(path)  # raises KeyError for a key without an entry
        group = path.split(".")[0]
        if group == "probes":  # each probe has its own entry; <probe>_chance is printed beside it
            assert metrics.metric(path).key == path.removesuffix("_chance"), path
        if group in ("pose_accuracy", "appearance_retention", "normalised"):
            # less transfer, ceiling, ...
            entry = path if group == "normalised" else path.rsplit(".", 1)[0]
            name = entry[len(group) + 1:]
            if group == "normalised" or name.startswith(("pck@", "pixel_error")) or name == "mean":
                # only the data's own labels and attributes fall back to the group
                assert entry in keys, path
    assert len(keys) == len(metrics.METRICS)  # one entry per key
    with pytest.raises(KeyError, match="not in"):
        metrics.metric("no_such_metric")


def test_the_three_consumers_print_what_they_printed_before(tmp_path):
    written = outputs(REPORT, tmp_path)
    assert written["table"] == TABLE_BEFORE
    assert [line for line in written["md"].splitlines()
            if line.startswith("| variant |")] == HEADERS_BEFORE
    assert benchmark.COLUMNS == COLUMNS_BEFORE == metrics.csv_columns()
    assert (tmp_path / "results.csv").read_text().splitlines()[0] == ",".join(COLUMNS_BEFORE)
    for line in ("<td>transfer SSIM (1 is exact)</td>", "<td>transfer PSNR (dB)</td>",
                 "<td>appearance code -&gt; pose</td><td>0.6000</td><td>0.1000</td>"
                 "<td>leak: chance is best</td>",
                 "<td>post-hoc MI(pose mean; appearance)</td><td>0.5678 nats</td><td>0</td>"
                 "<td>leak: 0 nats is best</td>",
                 "12.6 min of training;\ngamma 0.001235, lambda 12.35 (epsilon 0.05)."):
        assert line in written["html"], line


def test_the_three_consumers_take_their_labels_from_the_table(tmp_path, monkeypatch):
    marked = tuple(dataclasses.replace(m, label=f"L[{m.key}]", short=m.short and f"S[{m.key}]",
                                       note=m.note and f"N[{m.key}]") for m in metrics.METRICS)
    monkeypatch.setattr(metrics, "METRICS", marked)
    written = outputs(REPORT, tmp_path)
    probes = [m.key for m in marked if m.key.startswith("probes.")]
    in_table = ["protocol", "variant", "step", "train_seconds", "triplet_mse", "reconstruction_mse",
                "gamma", "lambda", "image_quality.ssim", "image_quality.psnr_db", "judge",
                "pose_accuracy", "appearance_retention", "pose_accuracy.pck@0.05",
                "pose_accuracy.pixel_error", "appearance_retention.mean", "normalised.pose",
                "normalised.appearance", *probes, "posthoc_mi_nats", "posthoc_mi_mean_nats"]
    for key in in_table:
        assert f"L[{key}]" in written["table"], key
    in_page = ["triplet_mse", "reconstruction_mse", "image_quality.ssim", "image_quality.psnr_db",
               "gamma", "lambda", "epsilon", "pose_accuracy.pck@0.05", "pose_accuracy.pixel_error",
               "appearance_retention.mean", *probes, "posthoc_mi_nats", "posthoc_mi_mean_nats"]
    for key in in_page:
        assert f"L[{key}]" in written["html"], key
    ordered_table = report.format_table(ORDERED)
    ordered_page = html.write_html(ORDERED, [], tmp_path / "ordered.html").read_text("utf-8")
    for m in marked:
        described = ("fomm.frames", "fomm.image_size")  # in words, beside the numbers
        if (m.key.split(".")[0] in ("fomm", "appearance_judge", "appearance_distance",
                                    "keypoints")
                and m.key not in described):
            assert f"L[{m.key}]" in ordered_page, m.key
            if m.key != "appearance_judge.top1_chance":  # the table says chance
                assert f"L[{m.key}]" in ordered_table, m.key
    for m in marked:
        if m.note:
            assert m.note in written["html"] + ordered_page, m.key
        if m.short:
            assert m.short in written["md"], m.key
    assert "pose: action" not in written["table"] and "L[pose_accuracy]: action" in written["table"]
    assert "transfer MSE" not in written["table"] + written["html"]
    assert "triplet MSE" not in written["md"]


def test_the_judges_floors_follow_the_table():
    assert metrics.lower_is_better("pose_accuracy.pixel_error")
    assert not any(metrics.lower_is_better(k) for k in ("pose_accuracy.pck@0.1",
                                                        "pose_accuracy.action",
                                                        "appearance_retention.shirt"))
    errors = {f"pose/{metric}/{scored}": torch.tensor([value]) for metric, values in
              (("pixel_error", (2.0, 1.0, 5.0, 4.0, 6.0)),
               ("action", (0.5, 1.0, 0.25, 0.375, 0.125)))
              for scored, value in zip(("transfer", "ceiling", "floor_input", "floor_mean_image",
                                        "floor_average_body"), values)}
    pose = summarize_judged(errors)["pose_accuracy"]
    assert pose["pixel_error"]["floor"] == 4.0 and pose["action"]["floor"] == 0.375


def test_the_evaluation_seeds_are_those_it_always_drew_with():
    e = EvaluationConfig()
    assert (e.probe_train_seed, e.probe_test_seed, e.probe_seed, e.mi_pairs_seed, e.mi_seed,
            e.judge_seed, e.figure_seed) == (11, 12, 0, 13, 0, 0, 7)


def test_every_evaluation_seed_comes_from_the_config(humanoid, tmp_path, monkeypatch):
    seeds = {"probe_train_seed": 21, "probe_test_seed": 22, "probe_seed": 23, "mi_pairs_seed": 24,
             "mi_seed": 25, "judge_seed": 26, "figure_seed": 27}
    cfg = load_config("demo", tiny_overrides(tmp_path, **{"data.frame_stride": 40, "data.yaws": 2},
                                             **{f"evaluation.{k}": v for k, v in seeds.items()}))
    state = TrainState(cfg, torch.device("cpu"))
    seen = []

    def recording(name, position=None):
        original = getattr(report, name)

        def wrapper(*args, **kwargs):
            seen.append((name, kwargs["seed"] if "seed" in kwargs else args[position]))
            return original(*args, **kwargs)
        monkeypatch.setattr(report, name, wrapper)

    for name, position in (("encode_codes", None), ("leakage_probes", None), ("pair_codes", None),
                           ("posthoc_mutual_information", None), ("load_or_train_judge", 3)):
        recording(name, position)
    fixed_examples = humanoid.fixed_examples
    monkeypatch.setattr(humanoid, "fixed_examples",
                        lambda n, **k: (seen.append(("fixed_examples", k["seed"]))
                                        or fixed_examples(n, **k)))
    # a 3-step judge is not shipped
    with pytest.warns(UserWarning, match="other renders or another recipe"):
        metrics_, _ = report.evaluate_state(state, humanoid, progress=False)
    report.write_report(state, humanoid, metrics_, tmp_path / "report")
    assert seen == [("load_or_train_judge", 26), ("encode_codes", 21), ("encode_codes", 22),
                    ("leakage_probes", 23), ("pair_codes", 24), ("posthoc_mutual_information", 25),
                    ("posthoc_mutual_information", 25), ("fixed_examples", 27)]

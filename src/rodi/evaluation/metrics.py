"""One table of what ``rodi evaluate`` reports: the key of every number in ``metrics.json``, its
name for people, which way is better and how the printed table writes it.

The printed table (:func:`rodi.evaluation.report.format_table`), the HTML page
(:func:`rodi.evaluation.html.write_html`) and the benchmark's tables
(:mod:`rodi.evaluation.benchmark`) take their labels, units and columns from here, and the judges'
floors which way is better (:func:`rodi.evaluation.judges.summarize_judged`). To report a new
number, add its entry here first.

This module imports nothing from rodi, so every evaluation module can use it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One entry of ``metrics.json``.

    Attributes:
        key: where the report puts it: a dotted path into ``metrics.json`` (``image_quality.ssim``,
            ``probes.pose_to_appearance``, with its chance level beside it in ``..._chance``). An
            entry also stands for what lies under its key that the table does not name: the
            statistics of a per-item error (``triplet_mse.mean``), a record's fields
            (``judge.origin``), and the judged pose labels and appearance attributes under
            ``pose_accuracy`` and ``appearance_retention``, which depend on the data.
        label: its name for people, in the printed table and on the HTML page.
        higher_is_better: True, False (an error, a leak in nats), or None where neither is (a
            leakage probe, whose best is chance; a description of the run such as its step).
        short: its header in the benchmark's ``results.md``, or None where that table shows it
            under another entry's header or not at all.
        columns: its columns in the benchmark's ``results.csv`` (and ``results.json``), in order.
        unit: written after the number (``dB``, ``nats``, ``min``).
        fmt: the format spec of the number in the printed table (the HTML page and the benchmark
            write every float with 4 decimals).
        note: how to read it, where the HTML page says so.
    """

    key: str
    label: str
    higher_is_better: bool | None = None
    short: str | None = None
    columns: tuple[str, ...] = ()
    unit: str = ""
    fmt: str = ".4f"
    note: str = ""


_LEAK = "leak: chance is best"
_KEPT = "information kept: high is best"

METRICS: tuple[Metric, ...] = (
    # what was evaluated
    Metric("checkpoint", "checkpoint"),
    Metric("source", "data source"),
    Metric("protocol", "protocol"),
    Metric("transfer_target", "held-out items scored (triplets or pairs)"),
    Metric("variant", "variant", short="variant", columns=("variant",)),
    Metric("step", "step", short="steps", columns=("step",)),
    Metric("train_seconds", "training time", columns=("train_minutes",), unit="min",
           fmt=".1f"),  # printed in minutes
    Metric("num_triplets", "held-out triplets or pairs"),
    Metric("triplet_seed", "seed of the held-out triplets or pairs"),
    # transfers against exact targets (pixels in [-1, 1])
    Metric("triplet_mse", "transfer MSE", False, "triplet MSE",
           ("triplet_mse_mean", "triplet_mse_median", "triplet_mse_std")),
    Metric("reconstruction_mse", "self-reconstruction MSE", False, "self-rec. MSE",
           ("reconstruction_mse_mean",)),
    Metric("image_quality.ssim", "transfer SSIM", True, "SSIM", ("ssim_mean",), note="1 is exact"),
    Metric("image_quality.psnr_db", "transfer PSNR", True, "PSNR", ("psnr_db_mean",), unit="dB",
           fmt=".2f"),
    # the judges (rodi.evaluation.judges): each judged metric is a dict of transfer, ceiling,
    # floors, normalised
    Metric("judge", "judge"),
    Metric("judge_train_steps", "judge training steps"),
    Metric("pose_accuracy.pck@0.05", "pck@0.05", True, "PCK@0.05", ("pose_pck@0.05",), fmt=".3f"),
    Metric("pose_accuracy.pck@0.1", "pck@0.1", True, "PCK@0.1", ("pose_pck@0.1",), fmt=".3f"),
    Metric("pose_accuracy.pixel_error", "pixel_error", False, "keypoint error (px)",
           ("pose_pixel_error",), unit="px", fmt=".3f"),
    # the pose labels (action, direction, frame), and in the benchmark their mean
    Metric("pose_accuracy", "pose", True, "pose labels", ("pose_label_accuracy",), fmt=".3f"),
    # one entry per appearance attribute
    Metric("appearance_retention", "appearance", True, fmt=".3f"),
    Metric("appearance_retention.mean", "mean", True, "appearance retention",
           ("appearance_retention",), fmt=".3f"),
    Metric("normalised.pose", "normalised pose", True, "normalised pose", ("normalised_pose",),
           fmt=".3f"),
    Metric("normalised.pose_labels", "normalised pose labels", True, fmt=".3f"),
    Metric("normalised.appearance", "normalised appearance", True, "normalised appearance",
           ("normalised_appearance",), fmt=".3f"),
    # the same for self-reconstructions D(pi(x'), alpha(x')): what the model renders of an
    # appearance when nothing has to be disentangled, the transfers' own upper reference
    Metric("normalised.appearance_self_reconstruction", "normalised appearance of "
           "self-reconstructions", True, "normalised app. (self-rec.)",
           ("normalised_appearance_self_reconstruction",), fmt=".3f"),
    # FOMM's protocol on user data with ordered frames (rodi.evaluation.fomm): appearance from
    # each held-out clip's first frame, pose from frame t, scored against frame t; each measure
    # is a dict of the mean over all frames of transfer, first_frame and mean_frame (the floors)
    Metric("fomm", "FOMM protocol"),
    Metric("fomm.clips", "held-out clips"),
    Metric("fomm.frames", "frames of the held-out clips"),
    Metric("fomm.image_size", "image side", unit="px"),
    Metric("fomm.l1", "L1", False, fmt=".4f", note="pixels in [0, 1], FOMM's measure"),
    Metric("fomm.mse", "MSE", False, fmt=".4f", note="pixels in [-1, 1]"),
    Metric("fomm.ssim", "SSIM", True, fmt=".4f", note="1 is exact"),
    Metric("fomm.psnr_db", "PSNR", True, unit="dB", fmt=".2f"),
    Metric("fomm.aed", "AED", False, fmt=".4f",
           note="the appearance judge's embedding distance to frame t"),
    # the keypoint judge of user data (rodi.evaluation.keypoints): AKD and MKR of cross-identity
    # transfers against their pose frames, each a dict over KEYPOINT_COLUMNS of that module
    Metric("keypoints", "keypoint judge"),
    Metric("keypoints.pairs", "held-out pairs (appearance of A, pose of B)"),
    Metric("keypoints.akd_px", "AKD", False, unit="px", fmt=".2f",
           note="mean absolute coordinate difference of the joints found in both, pixels of "
                "the image"),
    Metric("keypoints.mkr", "MKR", False, fmt=".3f",
           note="fraction of the pose frame's joints not found in the output"),
    # the appearance judge of user data (rodi.evaluation.reid): its recipe and held-out quality
    Metric("appearance_judge", "appearance judge"),
    Metric("appearance_judge.top1", "held-out re-identification top-1", True, fmt=".3f"),
    Metric("appearance_judge.top1_chance", "chance top-1 (1 / held-out identities)", fmt=".3f"),
    Metric("appearance_judge.same_distance", "distance within an identity", False,
           fmt=".3f", note="two frames of one held-out identity"),
    Metric("appearance_judge.different_distance", "distance between identities", True,
           fmt=".3f", note="frames of two held-out identities"),
    Metric("appearance_judge.auc", "same-vs-different AUC", True, fmt=".3f",
           note="0.5 is chance, 1 separates every pair"),
    # cross-identity transfers on held-out identities (appearance from A, pose from B), each a
    # dict of the mean embedding distance of transfer, appearance_copied, pose_copied and
    # self_reconstruction
    Metric("appearance_distance", "cross-identity outputs"),
    Metric("appearance_distance.pairs", "held-out pairs (appearance of A, pose of B)"),
    Metric("appearance_distance.to_appearance", "distance to the appearance identity", False,
           fmt=".3f", note="to another frame of it; low: its appearance kept"),
    Metric("appearance_distance.to_pose", "distance to the pose input", True, fmt=".3f",
           note="high: the pose input's appearance did not leak in"),
    Metric("appearance_distance.normalised", "normalised appearance distance", True, fmt=".3f",
           note="0 as far from the appearance identity as the pose input, 1 as close as the "
                "appearance input"),
    # leakage probes (rodi.evaluation.probes): test accuracy, each beside <key>_chance
    Metric("probes.pose_to_appearance", "pose sample -> appearance", None,
           "pose->app. (sample / mean)", ("pose_to_appearance", "pose_to_appearance_chance"),
           fmt=".3f", note=_LEAK),
    # beside pose_to_appearance
    Metric("probes.pose_mean_to_appearance", "pose mean -> appearance", None, None,
           ("pose_mean_to_appearance",), fmt=".3f", note=_LEAK),
    Metric("probes.appearance_to_pose", "appearance code -> pose", None, "app.->pose",
           ("appearance_to_pose", "appearance_to_pose_chance"), fmt=".3f", note=_LEAK),
    Metric("probes.appearance_to_appearance", "appearance code -> appearance", True, "app.->app.",
           ("appearance_to_appearance",), fmt=".3f", note=_KEPT),
    Metric("probes.pose_to_pose", "pose sample -> pose", True, "pose->pose (sample / mean)",
           ("pose_to_pose",), fmt=".3f", note=_KEPT),
    Metric("probes.pose_mean_to_pose", "pose mean -> pose", True, None,  # beside pose_to_pose
           ("pose_mean_to_pose",), fmt=".3f", note=_KEPT),
    Metric("probes_per_label", "probe accuracy per code and label"),
    # post-hoc mutual information of frozen codes
    Metric("posthoc_mi_nats", "post-hoc MI(pose sample; appearance)", False,
           "post-hoc MI (sample / mean)", ("posthoc_mi_nats",), unit="nats", fmt=".3f",
           note="leak: 0 nats is best"),
    # beside posthoc_mi_nats
    Metric("posthoc_mi_mean_nats", "post-hoc MI(pose mean; appearance)", False, None,
           ("posthoc_mi_mean_nats",), unit="nats", fmt=".3f", note="leak: 0 nats is best"),
    # the objective's state at the checkpoint
    Metric("gamma", "gamma", None, "final gamma", ("final_gamma",), fmt=".4g"),
    Metric("lambda", "lambda", None, fmt=".4g"),
    Metric("epsilon", "epsilon"),
    # the benchmark's own and the time spent
    Metric("images_per_s", "training images per second", True, "images/s", ("images_per_s",)),
    Metric("evaluation_seconds", "seconds per evaluation stage", unit="s"),
)

# the outputs each FOMM-protocol and cross-identity measure is given for (the dict keys under
# fomm.<measure> and appearance_distance.<to_...>), floors first, with their names for people
FOMM_COLUMNS = (("first_frame", "first frame copied"), ("mean_frame", "mean frame"),
                ("transfer", "transfer"))
CROSS_COLUMNS = (("pose_copied", "pose input copied"), ("transfer", "transfer"),
                 ("appearance_copied", "appearance input copied"),
                 ("self_reconstruction", "self-reconstruction"))
# the outputs the keypoint judge scores against the pose frames (keypoints.<measure>), floors
# first, then the model's ceiling and the detector's
KEYPOINT_COLUMNS = (("appearance_copied", "appearance input copied"), ("mean_frame", "mean frame"),
                    ("transfer", "transfer"), ("self_reconstruction", "self-reconstruction"),
                    ("pose_round_trip", "pose frame at half size"))


def metric(key: str) -> Metric:
    """The entry of ``key`` (a dotted path into ``metrics.json``), else of the nearest key above it
    (``pose_accuracy.action`` -> ``pose_accuracy``, ``triplet_mse.mean`` -> ``triplet_mse``); a
    probe's chance level is its probe's (``probes.pose_to_pose_chance`` -> ``probes.pose_to_pose``).

    Raises:
        KeyError: neither ``key`` nor any key above it is in :data:`METRICS`.
    """
    entries = {m.key: m for m in METRICS}  # read at every call, so a changed table counts
    if key.startswith("probes.") and key.endswith("_chance"):
        key = key.removesuffix("_chance")
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        found = entries.get(".".join(parts[:n]))
        if found is not None:
            return found
    raise KeyError(f"{key!r} is not in rodi.evaluation.metrics.METRICS")


def label(key: str) -> str:
    """The label of ``key``; for an entry the table does not name (a judged pose label or
    appearance attribute, such as ``pose_accuracy.action``), its own name (``action``)."""
    m = metric(key)
    return m.label if m.key == key else key[len(m.key) + 1:]


def lower_is_better(key: str) -> bool:
    """Whether ``key``'s best is its lowest value (an error)."""
    return metric(key).higher_is_better is False


def joined(*keys: str) -> str:
    """One label for several entries printed together: their common leading words once, then the
    rest of each, separated by `` / `` (``normalised pose / appearance``, ``gamma / lambda``)."""
    words = [label(k).split(" ") for k in keys]
    common = 0
    while all(len(w) > common + 1 and w[common] == words[0][common] for w in words):
        common += 1
    return " ".join(words[0][:common] + [" / ".join(" ".join(w[common:]) for w in words)])


def under(key: str) -> tuple[Metric, ...]:
    """The entries below ``key`` (``probes`` -> ``probes.pose_to_appearance``, ...), in order."""
    return tuple(m for m in METRICS if m.key.startswith(key + "."))


def csv_columns() -> tuple[str, ...]:
    """The benchmark's ``results.csv`` columns, in the table's order."""
    return tuple(c for m in METRICS for c in m.columns)

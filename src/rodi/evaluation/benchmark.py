"""``rodi benchmark``: every variant trained with the same data, networks, seed and budget, then
evaluated and compared in one folder (ICCV 2019, Esser et al., section 4.1 and figure 4)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from rodi.config import VARIANTS, Config, ConfigError, load_config, to_dict
from rodi.data.sources import open_source
from rodi.evaluation.metrics import csv_columns, metric
from rodi.evaluation.plots import plot_training_curves, plot_violins, side_by_side
from rodi.evaluation.report import evaluate_state, write_report
from rodi.evaluation.validation import validation
from rodi.training.loop import checkpoint_path, train
from rodi.training.state import TrainState
from rodi.variants import variant

COLUMNS = csv_columns()  # of results.csv, from rodi.evaluation.metrics
# the entries of the second table of results.md (transfers as the judges read them), after SSIM
# and PSNR
JUDGED = ("pose_accuracy.pck@0.05", "pose_accuracy.pck@0.1", "pose_accuracy.pixel_error",
          "pose_accuracy", "appearance_retention.mean", "normalised.pose", "normalised.appearance",
          "normalised.appearance_self_reconstruction")


def budget_overrides(budget: str) -> list[str]:
    """``90s``, ``10m``/``10min``, ``1h`` (wall clock) or ``5000``/``5000steps`` (steps) as config
    overrides.

    Raises:
        ConfigError: for anything else.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|steps?)?\s*", budget)
    if not m:
        raise ConfigError(f"budget {budget!r} must look like 90s, 10m, 1h or 5000steps")
    value, unit = float(m.group(1)), m.group(2) or "steps"
    if unit.startswith("step"):
        if value != int(value) or value < 1:
            raise ConfigError(f"a step budget must be a positive whole number, got {budget!r}")
        return [f"train.max_steps={int(value)}", "train.max_minutes=null"]
    minutes = {"s": value / 60, "m": value, "min": value, "h": value * 60}[unit]
    return [f"train.max_minutes={minutes}", "train.max_steps=100000000"]


def _median_images_per_s(run_dir: Path) -> float:
    with (run_dir / "scalars.csv").open(newline="") as f:
        speeds = sorted(float(r["images_per_s"]) for r in csv.DictReader(f))
    return speeds[len(speeds) // 2] if speeds else float("nan")


def run_benchmark(cfg: Config, variants: list[str], budget: str, out_dir: str | Path,
                  progress: bool = True) -> Path:
    """Train and evaluate each variant into ``out_dir/<variant>/``, then write the comparison.

    Writes ``results.md``, ``results.csv``, ``results.json`` (the table, with the judges' ceilings
    and floors where the data has exact renders), ``triplet_mse_violins.png``,
    ``transfer_matrices.png`` (all variants side by side, same inputs), each variant's report
    (``<variant>/report/``: the page and metrics of ``rodi evaluate``), and
    ``<variant>_training_curves.png`` for each variant with an adaptive gamma (``rodi``). A
    variant whose ``report/metrics.json`` exists is not run again; an interrupted one resumes from
    its checkpoint.

    Raises:
        ConfigError: an unknown variant or a malformed budget.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ConfigError(f"unknown variants {unknown or variants}; choose from "
                          f"{', '.join(VARIANTS)}")
    out_dir = Path(out_dir)
    source = open_source(cfg.data, cfg.model.image_size, progress)
    results, errors, matrices, bounds = [], {}, {}, {}
    for name in variants:
        vdir = out_dir / name
        run_dir = vdir / "run"
        vcfg = load_config(None, [f"objective.variant={name}", f"train.out_dir={run_dir}",
                                  *budget_overrides(budget)], base=to_dict(cfg))
        done = vdir / "report" / "metrics.json"
        if not done.exists():
            train(vcfg, resume=checkpoint_path(run_dir).exists(), progress=progress,
                  validate=validation(vcfg))
            state = TrainState.from_checkpoint(checkpoint_path(run_dir))
            metrics, errs = evaluate_state(state, source, progress=progress)
            metrics = {"checkpoint": str(checkpoint_path(run_dir)), **metrics,
                       "images_per_s": _median_images_per_s(run_dir)}
            np.save(vdir / "triplet_mse.npy", errs["transfer"].numpy())
            write_report(state, source, metrics, vdir / "report", run_dir / "scalars.csv")
        metrics = json.loads(done.read_text())
        results.append(_row(metrics))
        bounds = _bounds(metrics) or bounds
        errors[name] = np.load(vdir / "triplet_mse.npy")
        matrices[name] = vdir / "report" / "transfer_matrix.png"
    _write_tables(results, out_dir, budget, bounds)
    plot_violins(errors, out_dir / "triplet_mse_violins.png")
    side_by_side(matrices, out_dir / "transfer_matrices.png")
    for name in (v for v in variants if variant(v).adaptive_gamma):  # where gamma moves: rodi
        plot_training_curves(out_dir / name / "run" / "scalars.csv",
                             out_dir / f"{name}_training_curves.png", epsilon=cfg.objective.epsilon)
    return out_dir


def _judged(m: dict, scored: str) -> dict:
    """The judged columns of one variant: ``transfer`` scores, or the judge's
    ``ceiling``/``floor``."""
    pose, look = m.get("pose_accuracy", {}), m.get("appearance_retention", {})
    labels = [v[scored] for k, v in pose.items() if not k.startswith(("pck@", "pixel_error"))]
    return {
        "pose_pck@0.05": pose.get("pck@0.05", {}).get(scored),
        "pose_pck@0.1": pose.get("pck@0.1", {}).get(scored),
        "pose_pixel_error": pose.get("pixel_error", {}).get(scored),
        "pose_label_accuracy": sum(labels) / len(labels) if labels else None,
        "appearance_retention": look.get("mean", {}).get(scored),
        **({"normalised_pose": m.get("normalised", {}).get("pose"),
            "normalised_appearance": m.get("normalised", {}).get("appearance"),
            "normalised_appearance_self_reconstruction":
                m.get("normalised", {}).get("appearance_self_reconstruction")}
           if scored == "transfer" else {}),
    }


def _bounds(m: dict) -> dict:
    """The judge's ceiling and floor (the same for every variant: same triplets, same judge)."""
    if "pose_accuracy" not in m:
        return {}
    return {"ceiling": _judged(m, "ceiling"), "floor": _judged(m, "floor")}


def _row(m: dict) -> dict:
    p = m.get("probes", {})
    q = m.get("image_quality", {})
    return {
        "variant": m["variant"], "step": m["step"],
        "train_minutes": round(m["train_seconds"] / 60, 2),
        "triplet_mse_mean": m["triplet_mse"]["mean"],
        "triplet_mse_median": m["triplet_mse"]["median"],
        "triplet_mse_std": m["triplet_mse"]["std"],
        "reconstruction_mse_mean": m["reconstruction_mse"]["mean"],
        "ssim_mean": q.get("ssim", {}).get("mean"),
        "psnr_db_mean": q.get("psnr_db", {}).get("mean"),
        **_judged(m, "transfer"),
        **{k: p[k] for k in COLUMNS if k in p},
        "posthoc_mi_nats": m.get("posthoc_mi_nats"),
        "posthoc_mi_mean_nats": m.get("posthoc_mi_mean_nats"),
        "final_gamma": m["gamma"],
        "images_per_s": m.get("images_per_s"),
    }


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.0f}"
    return "" if v is None else str(v)


def _short(key: str) -> str:
    """The results.md header of an entry of :data:`rodi.evaluation.metrics.METRICS`."""
    return metric(key).short


def _header(*cells: str) -> list[str]:
    """The header row and rule of a results.md table."""
    return ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]


def _write_tables(rows: list[dict], out_dir: Path, budget: str, bounds: dict) -> None:
    with (out_dir / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: r.get(k) for k in COLUMNS} for r in rows)
    (out_dir / "results.json").write_text(
        json.dumps({"budget": budget, "results": rows, "judge": bounds}, indent=2) + "\n")
    lines = [f"Budget per variant: {budget}. Triplet and reconstruction MSE: pixels in [-1, 1]; "
             "probes: test accuracy on held-out characters (chance in brackets), pose code as a "
             "posterior sample / as the posterior mean; post-hoc MI(pose; appearance) in nats, "
             "sample / mean.", "",
             *_header(_short("variant"), _short("step"), f"{_short('triplet_mse')} mean", "median",
                      "std",
                      *map(_short, ("reconstruction_mse", "probes.pose_to_appearance",
                                    "probes.appearance_to_pose", "probes.appearance_to_appearance",
                                    "probes.pose_to_pose", "posthoc_mi_nats", "gamma",
                                    "images_per_s")))]
    for r in rows:
        cells = [r["variant"], str(r["step"]), _fmt(r["triplet_mse_mean"]),
                 _fmt(r["triplet_mse_median"]), _fmt(r["triplet_mse_std"]),
                 _fmt(r["reconstruction_mse_mean"]),
                 f"{_fmt(r.get('pose_to_appearance'))} / {_fmt(r.get('pose_mean_to_appearance'))} "
                 f"({_fmt(r.get('pose_to_appearance_chance'))})",
                 f"{_fmt(r.get('appearance_to_pose'))} "
                 f"({_fmt(r.get('appearance_to_pose_chance'))})",
                 _fmt(r.get("appearance_to_appearance")),
                 f"{_fmt(r.get('pose_to_pose'))} / {_fmt(r.get('pose_mean_to_pose'))}",
                 f"{_fmt(r['posthoc_mi_nats'])} / {_fmt(r.get('posthoc_mi_mean_nats'))}",
                 _fmt(r["final_gamma"]), _fmt(r["images_per_s"])]
        lines.append("| " + " | ".join(cells) + " |")
    judged = [metric(k).columns[0] for k in JUDGED]
    lines += ["", "Transfers against exact targets: SSIM and PSNR (dB); pose accuracy (PCK at 0.05 "
              "and 0.1 of the image side, mean keypoint error in pixels, mean accuracy of the pose "
              "labels) and appearance retention (mean attribute accuracy) as a judge trained on "
              "exact renders reads them. Ceiling: the judge on the exact targets; floor: the best "
              "of the input that should not show through, the mean held-out target and a constant "
              "average body. Normalised: (score - floor) / (ceiling - floor) per metric or "
              "attribute, then averaged (pose: PCK@0.1, or the pose labels where there are no "
              "keypoints).", "",
              *_header(*map(_short, ("variant", "image_quality.ssim", "image_quality.psnr_db",
                                     *JUDGED)))]
    for r in rows + [{"variant": f"*{k}*", **v} for k, v in bounds.items()]:
        cells = [r["variant"], _fmt(r.get("ssim_mean")), _fmt(r.get("psnr_db_mean")),
                 *(_fmt(r.get(k)) for k in judged)]
        lines.append("| " + " | ".join(cells) + " |")
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")

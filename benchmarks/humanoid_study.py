"""The humanoid study: settings of the `demo` config on the mocap humanoid at an equal step budget,
several seeds each, every run evaluated with `rodi evaluate` (held-out appearances in poses of
held-out clips, the mocap judge's ceilings and floors), then one table.

    python benchmarks/humanoid_study.py --steps 800 --seeds 0,1 --out-dir runs/humanoid-study \
        --setting baseline= \
        --setting "gamma-0.01=objective.gamma=0.01 objective.gamma_in_warmup=false"

Each ``--setting NAME=OVERRIDES`` names a list of config overrides (space-separated, may be empty)
applied on top of ``--config`` (default `demo`). Runs that already hold a checkpoint and a report
are reused, so the script resumes a study that was cut. Writes ``results.md`` and ``results.csv`` in
``--out-dir``: per setting, the mean and spread (min-max) over seeds of the KL (nats per example,
the mean of the last 100 logged steps), normalised pose (PCK@0.1) and appearance scores, the
pose-mean -> appearance probe and its chance, the normalised appearance of self-reconstructions
(what the model renders of an appearance when nothing has to be disentangled), and gamma/lambda
at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

COLUMNS = ("kl_nats", "normalised_pose", "normalised_appearance",
           "normalised_appearance_self_reconstruction", "pck@0.1", "appearance_mean",
           "pose_mean_to_appearance", "pose_mean_to_appearance_chance", "pose_to_pose", "gamma",
           "lambda", "triplet_mse")


def _run(cmd: list[str], log: Path) -> None:
    with log.open("a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)


def _final_kl(run_dir: Path, last: int = 4) -> float:
    with (run_dir / "scalars.csv").open() as f:
        rows = list(csv.DictReader(f))
    tail = rows[-last:]
    return sum(float(r["kl"]) for r in tail) / len(tail)


def run_one(config: str, overrides: list[str], steps: int, seed: int, run_dir: Path, threads: int,
            num_triplets: int | None) -> dict:
    """Train (or reuse) one run and evaluate its last checkpoint; returns the study's columns."""
    report = run_dir / "reports" / "study"
    log = run_dir.parent / f"{run_dir.name}.log"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    rodi = [sys.executable, "-m", "rodi.cli"]
    checkpoints = run_dir / "checkpoints"
    if not (checkpoints / "last.pt").exists():
        _run([*rodi, "train", config, *overrides, "train.max_minutes=null",
              f"train.max_steps={steps}", f"train.seed={seed}", f"train.threads={threads}",
              f"train.out_dir={run_dir}", "--no-progress"], log)
    elif not (checkpoints / f"step-{steps:07d}.pt").exists():  # cut before its last step
        _run([*rodi, "train", "--resume", str(run_dir), "--no-progress"], log)
    if not (report / "metrics.json").exists():
        extra = ["--num-triplets", str(num_triplets)] if num_triplets else []
        _run([*rodi, "evaluate", "-c", str(run_dir / "checkpoints" / "last.pt"), "-o", str(report),
              *extra], log)
    m = json.loads((report / "metrics.json").read_text())
    probes = m.get("probes", {})
    return {
        "kl_nats": _final_kl(run_dir),
        "normalised_pose": m["normalised"]["pose"],
        "normalised_appearance": m["normalised"]["appearance"],
        "normalised_appearance_self_reconstruction":
            m["normalised"].get("appearance_self_reconstruction"),
        "pck@0.1": m["pose_accuracy"]["pck@0.1"]["transfer"],
        "appearance_mean": m["appearance_retention"]["mean"]["transfer"],
        "pose_mean_to_appearance": probes.get("pose_mean_to_appearance"),
        "pose_mean_to_appearance_chance": probes.get("pose_mean_to_appearance_chance"),
        "pose_to_pose": probes.get("pose_mean_to_pose"),
        "gamma": m["gamma"],
        "lambda": m["lambda"],
        "triplet_mse": m["triplet_mse"]["mean"],
    }


def _summary(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.3f}"
    return f"{mean:.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="demo")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--num-triplets", type=int, default=None,
                        help="default: the config's (8000)")
    parser.add_argument("--out-dir", default="runs/humanoid-study")
    parser.add_argument("--setting", action="append", required=True, metavar="NAME=OVERRIDES")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    out = Path(args.out_dir)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for setting in args.setting:
        name, _, overrides = setting.partition("=")
        per_seed = []
        for seed in seeds:
            r = run_one(args.config, overrides.split(), args.steps, seed,
                        out / f"{name}-seed{seed}", args.threads, args.num_triplets)
            per_seed.append(r)
            rows.append({"setting": name, "overrides": overrides, "seed": seed, **r})
            print(name, seed,
                  {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()},
                  flush=True)
        rows.append({"setting": name, "overrides": overrides, "seed": "mean",
                     **{k: _summary([p[k] for p in per_seed]) for k in COLUMNS}})
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["setting", "overrides", "seed", *COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"Config `{args.config}`, {args.steps} steps per run, seeds {args.seeds}; "
             "mean (min-max over seeds).",
             "", "| setting | overrides | KL (nats) | normalised pose (PCK@0.1) "
             "| normalised appearance | normalised appearance of self-reconstructions "
             "| pose mean -> appearance (chance) | pose mean -> pose | gamma | lambda "
             "| triplet MSE |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["seed"] != "mean":
            continue
        lines.append(f"| {r['setting']} | `{r['overrides'] or '(none)'}` | {r['kl_nats']} | "
                     f"{r['normalised_pose']} | {r['normalised_appearance']} | "
                     f"{r['normalised_appearance_self_reconstruction']} | "
                     f"{r['pose_mean_to_appearance']} ({r['pose_mean_to_appearance_chance']}) | "
                     f"{r['pose_to_pose']} | {r['gamma']} | {r['lambda']} | {r['triplet_mse']} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Quality against CPU-minutes for candidate settings, side by side (the learning-speed issue).

    python benchmarks/learning_speed.py sprites-1h --steps 1500 --eval-every 250 --seeds 0 1 \\
        --setting default= --setting constant-lr=optim.schedule=constant \\
        --out runs/learning-speed/screen

Each ``--setting NAME=OVERRIDES`` is the config plus ``key=value`` overrides separated by ``;``
(the first setting is the one the ratios compare against, normally today's default). For every
setting the script:

1. times ``--time-steps`` training steps (:func:`rodi.training.step.train_step`, after 3 warm-up
   steps) in this process: the seconds per step of the setting on this machine, measured before
   any training so that the cores are as idle as the user keeps them;
2. trains each seed for a step budget (``--steps``, or the setting's own ``train.max_steps=N``, so
   that a faster setting can get the steps of equal CPU time; ``train.max_minutes`` is cleared, so
   a linear schedule decays over the steps), with a checkpoint every ``--eval-every`` steps; a rerun
   resumes and skips what is done;
3. scores every checkpoint on the validation split (training identities held out of training;
   never the test split, so settings can be chosen from these numbers): transfer MSE (pixels in
   [-1, 1]) and the judged scores of :func:`rodi.evaluation.judges.summarize_judged` (the shipped
   judge where its fingerprint matches) on ``--items`` validation triplets.

With ``--jobs N`` the runs train and are scored N at a time in worker processes, each with
``cores // N`` torch threads (``train.threads``), so that two runs share two cores; the seconds
per step are still timed first, in this process, on all cores.

CPU-minutes are steps times the measured seconds per step, so a busy machine slows the run but not
the curves. Outputs in ``--out``: ``curves.csv`` (one row per setting, seed and checkpoint),
``speed.json`` (seconds per step), ``curves.png`` (each quality against CPU-minutes, mean over
seeds with the spread) and ``table.md``: per setting, the final quality (mean and spread over
seeds), quality at the reference setting's final CPU-minutes, and the CPU-minutes to reach the
reference's final quality, each as a ratio to the reference.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from rodi.config import Config, load_config
from rodi.data.sources import open_source
from rodi.distributed import resolve_device
from rodi.evaluation.judges import load_or_train_judge, summarize_judged, supports_judges
from rodi.evaluation.triplets import triplet_errors
from rodi.evaluation.validation import validation
from rodi.training.loop import checkpoint_path, train
from rodi.training.state import TrainState
from rodi.training.step import train_step, wrap_step

# what "quality" is, per source: (column, label, higher is better)
QUALITY = {
    "sprites": [("transfer_mse", "transfer MSE", False), ("action", "action accuracy", True),
                ("direction", "direction accuracy", True), ("frame", "frame accuracy", True)],
    "mocap": [("transfer_mse", "transfer MSE", False), ("normalised_pose", "normalised pose", True),
              ("normalised_appearance", "normalised appearance", True)],
    "flare": [("transfer_mse", "transfer MSE", False), ("normalised_pose", "normalised pose", True),
              ("normalised_appearance", "normalised appearance", True)],
}


def parse_setting(text: str) -> tuple[str, list[str]]:
    """``NAME=key=value;key=value`` -> (NAME, overrides)."""
    name, _, rest = text.partition("=")
    if not name:
        raise SystemExit(f"--setting {text!r}: give NAME=OVERRIDES (OVERRIDES may be empty)")
    return name, [o for o in rest.split(";") if o]


def setting_steps(overrides: list[str], steps: int) -> int:
    """A setting's step budget: its own ``train.max_steps=N`` override where it has one (for
    comparisons at equal CPU time, where a faster setting gets more steps), else ``steps``."""
    own = [o.partition("=")[2] for o in overrides if o.startswith("train.max_steps=")]
    try:
        return int(own[-1]) if own else steps
    except ValueError:
        raise SystemExit(f"train.max_steps={own[-1]!r}: give a whole number of steps") from None


def setting_config(config: str, overrides: list[str], steps: int, eval_every: int, seed: int,
                   out_dir: Path, data_root: str | None) -> Config:
    extra = [f"data.root={data_root}"] if data_root else []
    return load_config(config, [*overrides, *extra, "train.max_minutes=null",
                                f"train.max_steps={steps}", f"train.checkpoint_every={eval_every}",
                                f"train.keep_checkpoints={steps // eval_every + 1}",
                                f"train.seed={seed}", f"train.out_dir={out_dir}"])


def seconds_per_step(cfg: Config, source, steps: int) -> float:
    """Seconds of one training step of ``cfg`` here, timed over ``steps`` steps after 3 warm-up
    steps, at the step where the constraint is on (the most expensive one)."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    state = TrainState(cfg, resolve_device(cfg.train.device))
    losses = wrap_step(state.model, state.objective, state.objective.distributed, state.device)
    state.step = cfg.objective.warmup_steps
    g = torch.Generator().manual_seed(0)

    def batch() -> dict:
        out = source.sample_pairs(cfg.train.batch_size, g)
        return {k: out[k].to(state.device) for k in ("pose_image", "appearance_image")}

    for _ in range(3):
        train_step(state, losses, batch())
    start = time.perf_counter()
    for _ in range(steps):
        train_step(state, losses, batch())
    return (time.perf_counter() - start) / steps


def score(checkpoint: Path, source, judge, items: int) -> dict:
    """Validation-split quality of a checkpoint (see the module's docstring)."""
    state = TrainState.from_checkpoint(checkpoint)
    model = state.eval_model  # the weights' moving average where the run keeps one
    model.eval()
    seed = state.cfg.evaluation.validation_seed
    with torch.no_grad():
        errors = triplet_errors(model, source, items, seed, judge=judge, quality=False,
                                split="validation")
    row = {"step": state.step, "transfer_mse": errors["transfer"].mean().item()}
    if judge is not None:
        judged = summarize_judged(errors)
        for name, v in judged["pose_accuracy"].items():
            row[name] = v["transfer"]
        row["normalised_pose"] = judged["normalised"]["pose"]
        row["normalised_appearance"] = judged["normalised"]["appearance"]
        for name, v in judged["appearance_retention"].items():  # each attribute, normalised
            if name != "mean":
                row[f"normalised_{name}"] = v["normalised"]
    return row


def judged_source(cfg: Config) -> tuple:
    """The config's data source and its judge (the shipped one where its fingerprint matches,
    else trained and cached), or ``None`` for a source without labels to judge."""
    source = open_source(cfg.data, cfg.model.image_size)
    e = cfg.evaluation
    judge = (load_or_train_judge(source, e.judge_steps, e.judge_batch_size, e.judge_seed)
             if supports_judges(source) else None)
    return source, judge


def run_and_score(name: str, seed: int, cfg: Config, run: Path, steps: int, items: int,
                  seconds: float, done: set, source=None, judge=None) -> list[dict]:
    """Train one run to ``steps`` (resuming what a cut run left) and score each checkpoint not in
    ``done`` (steps already in curves.csv). Opens the source and the judge itself when run in a
    worker process. Returns the new rows."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if source is None:
        source, judge = judged_source(cfg)
    if not (run / "checkpoints" / f"step-{steps:07d}.pt").is_file():
        train(cfg, resume=checkpoint_path(run).exists(), progress=False, validate=validation(cfg))
    new = []
    for ckpt in sorted((run / "checkpoints").glob("step-*.pt")):
        if int(ckpt.stem.split("-")[1]) in done:
            continue
        row = {"setting": name, "seed": seed, **score(ckpt, source, judge, items)}
        row["cpu_minutes"] = row["step"] * seconds / 60
        new.append(row)
    return new


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: (v if k == "setting" else float(v) if v not in ("", "None") else math.nan)
                 for k, v in r.items()} for r in csv.DictReader(f)]


def write_rows(path: Path, rows: list[dict]) -> None:
    first = ("setting", "seed", "step", "cpu_minutes")
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k not in first, k))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def per_setting(rows: list[dict], name: str, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps' CPU-minutes, (seeds, steps) values) of one setting, on the steps every seed has."""
    seeds = sorted({r["seed"] for r in rows if r["setting"] == name})
    by_seed = [{r["cpu_minutes"]: r.get(column, math.nan) for r in rows
                if r["setting"] == name and r["seed"] == s} for s in seeds]
    common = sorted(set.intersection(*[set(d) for d in by_seed])) if by_seed else []
    return np.array(common), np.array([[d[t] for t in common] for d in by_seed])


def time_to_reach(minutes: np.ndarray, values: np.ndarray, target: float, higher: bool) -> float:
    """The first CPU-minute at which the seeds' mean reaches ``target`` (linear between
    checkpoints), or NaN where it never does."""
    mean = values.mean(0)
    reached = mean >= target if higher else mean <= target
    if not reached.any():
        return math.nan
    i = int(np.argmax(reached))
    if i == 0:
        return float(minutes[0])
    m0, m1, v0, v1 = minutes[i - 1], minutes[i], mean[i - 1], mean[i]
    return float(m0 + (target - v0) / (v1 - v0) * (m1 - m0)) if v1 != v0 else float(m1)


def write_outputs(rows: list[dict], names: list[str], quality: list, out: Path) -> None:
    fig = Figure(figsize=(5 * len(quality), 4))
    axes = fig.subplots(1, len(quality), squeeze=False)[0]
    lines = ["| setting | seeds | CPU-min | " + " | ".join(
        f"{label} (final; at ref. time; ratio)" for _, label, _ in quality)
        + " | CPU-min to reach ref. final " + " / ".join(c for c, _, _ in quality) + " (ratio) |",
        "|" + "---|" * (4 + len(quality))]
    ref = names[0]
    for name in names:
        cells, reach = [], []
        for ax, (column, label, higher) in zip(axes, quality):
            minutes, values = per_setting(rows, name, column)
            if not len(minutes):
                cells.append("n/a")
                reach.append("n/a")
                continue
            mean, spread = values.mean(0), values.std(0)
            ax.plot(minutes, mean, marker="o", label=name)
            ax.fill_between(minutes, mean - spread, mean + spread, alpha=0.2)
            ax.set_xlabel("CPU-minutes (steps x measured s/step)")
            ax.set_title(label)
            ref_minutes, ref_values = per_setting(rows, ref, column)
            ref_final = ref_values.mean(0)[-1]
            at_ref = float(np.interp(ref_minutes[-1], minutes, mean))
            ratio = at_ref / ref_final if ref_final else math.nan
            cells.append(f"{mean[-1]:.4f} ± {spread[-1]:.4f}; {at_ref:.4f}; {ratio:.2f}")
            t = time_to_reach(minutes, values, ref_final, higher)
            reach.append(f"{t:.1f} ({t / ref_minutes[-1]:.2f})" if not math.isnan(t)
                         else "not reached")
        minutes, values = per_setting(rows, name, quality[0][0])
        n_seeds = len(values)
        total = f"{minutes[-1]:.2f}" if len(minutes) else "n/a"
        lines.append(f"| {name} | {n_seeds} | {total} | " + " | ".join(cells) + " | "
                     + " / ".join(reach) + " |")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    lines.append("")
    lines.append(f"Quality on the validation split; spread = standard deviation over seeds; ratios "
                 f"to `{ref}`. 'at ref. time': the setting's quality at the CPU-minutes of "
                 f"`{ref}`'s last checkpoint (interpolated).")
    (out / "table.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--setting", action="append", required=True,
                        help="NAME=key=value;key=value (the first is the reference)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, required=True,
                        help="step budget per run (a setting's own train.max_steps=N overrides it)")
    parser.add_argument("--eval-every", type=int, required=True,
                        help="steps between scored checkpoints")
    parser.add_argument("--items", type=int, default=1000, help="validation triplets scored")
    parser.add_argument("--time-steps", type=int, default=20, help="steps timed per setting")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained side by side, each with cores // jobs torch threads")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    settings = [parse_setting(s) for s in args.setting]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    def config_of(overrides: list[str], seed: int, run: Path) -> Config:
        return setting_config(args.config, overrides, setting_steps(overrides, args.steps),
                              args.eval_every, seed, run, args.data_root)

    base = config_of(settings[0][1], 0, out)
    source, judge = judged_source(base)
    quality = QUALITY.get(base.data.source, QUALITY["mocap"])
    quality = quality if judge is not None else quality[:1]
    speed_file = out / "speed.json"
    speed = json.loads(speed_file.read_text()) if speed_file.is_file() else {}
    for name, overrides in settings:  # timed first, before any training of this invocation
        if name not in speed:
            cfg = config_of(overrides, 0, out)
            speed[name] = seconds_per_step(cfg, source, args.time_steps)
            speed_file.write_text(json.dumps(speed, indent=1))
            print(f"{name}: {speed[name]:.3f} s per step", flush=True)
    rows_file = out / "curves.csv"
    rows = read_rows(rows_file)
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    jobs = []
    for seed in args.seeds:  # seed-major, so that the first pair of runs compares the settings
        for name, overrides in settings:
            run = out / name / f"seed-{seed}"
            extra = [f"train.threads={threads}"] if threads else []
            cfg = config_of([*overrides, *extra], seed, run)
            done = {r["step"] for r in rows if r["setting"] == name and r["seed"] == seed}
            jobs.append((name, seed, cfg, run, setting_steps(overrides, args.steps), args.items,
                         speed[name], done))

    def report(new_rows: list[dict]) -> None:
        for row in new_rows:
            rows.append(row)
            print(f"{row['setting']} seed {row['seed']:g} step {row['step']:g}: " + ", ".join(
                f"{c} {row[c]:.4f}" for c, _, _ in quality if c in row), flush=True)
        write_rows(rows_file, rows)

    if args.jobs > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            for future in as_completed([pool.submit(run_and_score, *job) for job in jobs]):
                report(future.result())
    else:
        for job in jobs:
            report(run_and_score(*job, source=source, judge=judge))
    write_outputs(rows, [n for n, _ in settings], quality, out)
    print((out / "table.md").read_text())


if __name__ == "__main__":
    main()

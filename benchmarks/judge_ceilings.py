"""Judge recipes against their ceilings on exact renders (the learning-speed issue's raised
ceilings; docs/results/learning-speed/judge-ceilings).

    python benchmarks/judge_ceilings.py sprites --data-root ../shared/data/lpc-sprites \\
        --recipe shipped= --recipe steps-12000=steps=12000 --recipe width-48=width=48 \\
        --recipe no-blur=blurred_fraction=0 --recipe stride-1=first_stride=1 \\
        --recipe stride-1-no-blur-near=first_stride=1,blurred_fraction=0,near_weight=8 \\
        --out runs/judge-ceilings

Each ``--recipe NAME=OPTIONS`` trains a judge with :func:`rodi.evaluation.judges.train_judge` from
the config's recipe (``evaluation.judge_steps`` and the rest) changed by comma-separated options:
``steps``, ``width``, ``first_stride``, ``blurred_fraction`` and ``near_weight`` (poses that render
within ``--near-pixels`` differing pixels of a pose with another value of a pose label, for the
median character, are drawn ``near_weight`` times as often). ``shipped=`` (empty options) loads the
judge ``rodi evaluate`` would use instead of training one.

For every recipe it prints, and writes to ``--out/table.md`` and ``--out/ceilings.json``:

- the judge on the exact targets of ``--triplets`` triplets of the **validation** split (pose labels
  modulo identical renders, as ``rodi evaluate`` scores them), so recipes are compared without the
  test split;
- for every pair of poses that differ in one pose label and render within ``--near-pixels`` of each
  other for the median of ``--median-of`` characters ("near pairs"), the judge's accuracy on both
  renders of the pair over every character, binned by how many pixels the two renders differ in.
  This shows whether what is left is a judge's fault or renders a few pixels apart.

Training time is printed per recipe (the cores should be idle for it to mean anything).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from rodi.config import load_config
from rodi.data.sources import open_source
from rodi.evaluation.judges import judge_ceilings, load_or_train_judge, train_judge

PIXEL_BINS = ((1, 5), (5, 10), (10, 20), (20, 40), (40, 10**9))
OPTIONS = {"steps": int, "width": int, "first_stride": int, "blurred_fraction": float,
           "near_weight": float}


def parse_recipe(text: str) -> tuple[str, dict]:
    """``NAME=key=value,key=value`` -> (NAME, options)."""
    name, _, rest = text.partition("=")
    if not name:
        raise SystemExit(f"--recipe {text!r}: give NAME=OPTIONS (OPTIONS may be empty)")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in OPTIONS:
            raise SystemExit(f"--recipe {text!r}: unknown option {key!r}; known: "
                             + ", ".join(OPTIONS))
        options[key] = OPTIONS[key](value)
    return name, options


def differing_pixels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pixels (at uint8 levels) in which images ``a`` and ``b`` (..., 3, S, S) in [-1, 1] differ,
    shaped like their leading dimensions."""
    return ((a * 127.5).round() != (b * 127.5).round()).any(-3).flatten(-2).sum(-1)


@torch.no_grad()
def pose_pair_pixels(source, characters: torch.Tensor) -> torch.Tensor:
    """(C, P, P) long: :func:`differing_pixels` of each character's renders in poses i and j."""
    poses = torch.arange(source.num_poses)
    return torch.stack([differing_pixels(x[:, None], x[None]) for x in
                        (source.render(torch.full_like(poses, c), poses)
                         for c in characters.tolist())])


def near_pairs(source, median_pixels: torch.Tensor, near: int) -> list[tuple[int, int, str]]:
    """(pose i, pose j, label) with i < j that differ in exactly one pose label and whose renders
    differ in fewer than ``near`` pixels for the median character (but not in none)."""
    labels = source.pose_labels
    pairs = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            unequal = torch.nonzero(labels[i] != labels[j]).flatten().tolist()
            if len(unequal) == 1 and 0 < int(median_pixels[i, j]) < near:
                pairs.append((i, j, source.pose_attributes[unequal[0]]))
    return pairs


@torch.no_grad()
def near_pair_accuracy(judge, source, pairs) -> list[dict]:
    """Per pixel bin: renders of the near pairs' poses (every character) and the judge's accuracy
    on the label that tells the pair apart (renders identical for a character are left out)."""
    rows = {b: [0, 0] for b in PIXEL_BINS}
    characters = torch.arange(len(source.characters))
    column = {name: k for k, name in enumerate(source.pose_attributes)}
    for i, j, label in pairs:
        x = {pose: source.render(characters, torch.full_like(characters, pose)) for pose in (i, j)}
        d = differing_pixels(x[i], x[j])
        for pose in (i, j):
            right = judge.predict(x[pose])[label] == source.pose_labels[pose, column[label]]
            for lo, hi in PIXEL_BINS:
                m = (d >= lo) & (d < hi)
                rows[(lo, hi)][0] += int(m.sum())
                rows[(lo, hi)][1] += int(right[m].sum())
    return [{"pixels": f"{lo}-{hi - 1}" if hi < 10**9 else f">={lo}", "renders": n,
             "accuracy": right / n if n else None} for (lo, hi), (n, right) in rows.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", choices=["sprites", "flare", "mocap"])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--recipe", action="append", required=True, type=parse_recipe)
    parser.add_argument("--triplets", type=int, default=8000)
    parser.add_argument("--near-pixels", type=int, default=40)
    parser.add_argument("--median-of", type=int, default=128,
                        help="characters whose median differing pixels pick the near pairs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--out", type=Path, default=Path("runs/judge-ceilings"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = [f"data.source={args.data}", f"data.protocol={args.data}"]
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    cfg = load_config(None, overrides)
    source = open_source(cfg.data, cfg.model.image_size, progress=False)
    e = cfg.evaluation
    sample = torch.randperm(len(source.characters), generator=torch.Generator().manual_seed(0))
    pixels = pose_pair_pixels(source, sample[:args.median_of])
    pairs = near_pairs(source, pixels.median(0).values, args.near_pixels)
    near_poses = sorted({p for i, j, _ in pairs for p in (i, j)})
    print(f"{len(pairs)} near pairs of poses ({len(near_poses)} poses): "
          + ", ".join(f"{i}/{j} ({label})" for i, j, label in pairs), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, options in args.recipe:
        start = time.perf_counter()
        if not options:
            judge = load_or_train_judge(source, e.judge_steps, e.judge_batch_size, e.judge_seed,
                                        progress=False)
            how = f"the judge rodi evaluate uses ({judge.origin})"
        else:
            weights = None
            if "near_weight" in options:
                weights = torch.ones(source.num_poses)
                weights[near_poses] = options["near_weight"]
            recipe = {k: v for k, v in options.items() if k not in ("steps", "near_weight")}
            judge = train_judge(source, options.get("steps", e.judge_steps), e.judge_batch_size,
                                e.judge_seed, pose_weights=weights, **recipe)
            how = f"trained in {time.perf_counter() - start:.0f} s"
        ceilings = judge_ceilings(judge, source, args.triplets, cfg.data.triplet_seed,
                                  split="validation")
        near = near_pair_accuracy(judge, source, pairs)
        results[name] = {"options": options, "how": how, "ceilings": ceilings, "near": near}
        print(f"{name}: {how}; pose " + ", ".join(f"{k} {v:.4f}"
                                                  for k, v in ceilings["pose"].items())
              + "; appearance min " + f"{min(ceilings['appearance'].values()):.4f}; near pairs "
              + ", ".join(f"{r['pixels']} px {r['accuracy']:.3f} ({r['renders']})"
                          for r in near if r["renders"]), flush=True)
        (args.out / "ceilings.json").write_text(json.dumps(results, indent=1))
    labels = list(next(iter(results.values()))["ceilings"]["pose"])
    bins = [r["pixels"] for r in next(iter(results.values()))["near"]]
    lines = ["| recipe | options | " + " | ".join(labels) + " | appearance (min) | "
             + " | ".join(f"near pairs {b} px" for b in bins) + " |",
             "|---" * (3 + len(labels) + len(bins)) + "|"]
    for name, r in results.items():
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "(shipped recipe)"
        lines.append(f"| {name} | {opts} | "
                     + " | ".join(f"{r['ceilings']['pose'][k]:.4f}" for k in labels)
                     + f" | {min(r['ceilings']['appearance'].values()):.4f} | "
                     + " | ".join("" if n["accuracy"] is None else f"{n['accuracy']:.3f}"
                                  for n in r["near"]) + " |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

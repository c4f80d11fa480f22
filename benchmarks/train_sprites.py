"""Train `rodi` on the `sprites` protocol for a wall-clock budget, then print images/s of training
and the triplet MSE on the 8000 held-out test triplets.

    python benchmarks/train_sprites.py --minutes 60 --data-root ../shared/data/lpc-sprites

Extra arguments are config overrides (key=value), e.g. objective.variant=ae.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

from rodi.config import load_config
from rodi.evaluation.report import evaluate_checkpoint, format_table
from rodi.evaluation.validation import validation
from rodi.training.loop import checkpoint_path, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--config", default="sprites-1h")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out-dir", default=None, help="default: a temporary folder")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    out_dir = args.out_dir or tempfile.mkdtemp(prefix="rodi-bench-")
    overrides = [f"train.max_minutes={args.minutes}", f"train.out_dir={out_dir}", *args.overrides]
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    cfg = load_config(args.config, overrides)
    run = train(cfg, progress=False, validate=validation(cfg))
    with (run / "scalars.csv").open() as f:
        rows = list(csv.DictReader(f))
    speeds = [float(r["images_per_s"]) for r in rows]
    metrics = evaluate_checkpoint(checkpoint_path(run), cfg.data.root)
    print(format_table(metrics))
    print(f"training images/s (2 images per pair): mean {sum(speeds) / len(speeds):.1f}, "
          f"median {sorted(speeds)[len(speeds) // 2]:.1f} over {len(speeds)} logging intervals")
    print(f"run folder: {Path(run).resolve()}")


if __name__ == "__main__":
    main()

"""Where a model's appearance is lost: the judged appearance of its renders in four conditions.

    python benchmarks/appearance_paths.py runs/demo/checkpoints/last.pt --triplets 1000

For held-out triplets (appearance input A in pose q, pose input B in pose p, target A in pose p) of
a source with a judge (mocap, sprites, flare), the judge's attribute accuracy against A's attributes
of four renders, with the transfer MSE against the target (pixels in [-1, 1]):

- ``transfer``: D(pi(B in p), alpha(A in q)), what `rodi evaluate` scores;
- ``same_identity_pose``: D(pi(A in p), alpha(A in q)), the training situation (a pair of one
  identity) without the colour change of the pose input;
- ``same_identity_pose_colour_changed``: the same with the pose input through the config's colour
  change (``objective.pose_colour_change`` at strength 1), as the pose encoder sees it in training;
- ``self``: D(pi(A in p), alpha(A in p)), both codes of the target itself.

A transfer well below ``same_identity_pose`` loses the appearance to the pose input; all four low
means the decoder does not render the appearance at all. Prints one row per attribute (and the pose
metrics, scored against the target's pose in every condition).

Raises the errors of :func:`rodi.training.state.TrainState.from_checkpoint` and of the data source.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import torch

from rodi.data.sources import open_source
from rodi.evaluation.judges import judge_transfers, load_or_train_judge
from rodi.objectives.losses import colour_jitter, colour_map
from rodi.training.state import TrainState


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--triplets", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="of the triplets and colour changes")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    state = TrainState.from_checkpoint(args.checkpoint, None)
    cfg = state.cfg
    source = open_source(cfg.data, cfg.model.image_size, False)
    e = cfg.evaluation
    cache = Path(cfg.data.cache_dir) / "judges" if cfg.data.cache_dir else None
    judge = load_or_train_judge(source, e.judge_steps, e.judge_batch_size, e.judge_seed,
                                cache_dir=cache, progress=False)
    change = colour_map if cfg.objective.pose_colour_change == "map" else colour_jitter
    model = state.eval_model
    scores = defaultdict(list)
    with torch.no_grad():
        for chunk in source.triplet_indices(args.triplets, args.seed, split="test").split(250):
            batch = source.triplets(chunk)
            app, pose, target = batch["appearance_image"], batch["pose_image"], batch["target"]
            renders = {"transfer": model.transfer(app, pose),
                       "same_identity_pose": model.transfer(app, target),
                       "same_identity_pose_colour_changed":
                           model.transfer(app, change(target, 1.0)),
                       "self": model.transfer(target, target)}
            for name, out in renders.items():
                for key, v in judge_transfers(judge, batch, out).items():
                    if key.endswith("/transfer"):
                        scores[name, key.split("/")[1]].append(v)
                scores[name, "mse"].append((out - target).square().flatten(1).mean(1))
    names = list(renders)
    print(f"{args.checkpoint}: step {state.step}, {args.triplets} held-out triplets")
    print("| metric | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for metric in sorted({m for _, m in scores}):
        cells = [f"{torch.cat(scores[n, metric]).float().mean().item():.3f}" for n in names]
        print(f"| {metric} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""The keypoint judge on a checkpoint of user data: AKD and MKR of its cross-identity transfers
against their pose frames, beside floors and ceilings, by MediaPipe Pose (``rodi[keypoints]``).

    python benchmarks/keypoint_judge.py runs/vtest/checkpoints/last.pt --pairs 500

For ``--pairs`` held-out pose frames x of the ``folder``, ``videos`` or ``index`` source (the
``test`` split, :meth:`held_out_pairs`), each paired with the appearance input x' of another pair,
chosen to be another identity where the split has two (cross-identity transfers, so the pose has to
come from x and not from a copy of x'), the rows are:

- ``transfer``: D(pi(x), alpha(x')), the posterior means, what ``rodi retarget`` renders;
- ``self_reconstruction``: D(pi(x), alpha(x)), the model's ceiling: the pose frame through the
  model with its own appearance;
- ``pose_32px_round_trip``: the pose frame down to half its size and back (bilinear), the
  detector's ceiling: how far its keypoints move on a softer copy of the very same picture (the
  pose frame copied unchanged scores AKD 0 and MKR 0, detection being deterministic);
- ``appearance_copied``: x' itself, a floor (right appearance, wrong pose);
- ``mean_frame``: the mean of all the pose frames, a floor (no one in particular).

AKD is in pixels of the 64 px image (MediaPipe sees the images resized to 256 px; the landmarks are
scaled back), as the mean absolute coordinate difference over the joints detected in both (see
:func:`rodi.evaluation.keypoints.akd`); MKR is the fraction of the pose frame's joints missing in
the row's image. The detector's name is printed above the numbers: they are not comparable with
OpenPose-based or any published figures. ``--json`` writes the numbers as well.

Raises the errors of :func:`rodi.training.state.TrainState.from_checkpoint`, of the data source and
:class:`rodi.evaluation.keypoints.KeypointJudgeError` (``rodi[keypoints]`` missing).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from rodi.data.sources import open_source
from rodi.evaluation.keypoints import MediaPipePose, format_scores, keypoint_scores
from rodi.training.state import TrainState


def other_identity(identity: torch.Tensor) -> torch.Tensor:
    """For each of n items, the index of another item of another identity where there is one
    (the next such item, cyclically), else the next item: (n,) long."""
    n = len(identity)
    partner = torch.empty(n, dtype=torch.long)
    for i in range(n):
        for step in range(1, n + 1):
            j = (i + step) % n
            if identity[j] != identity[i] or step == n:
                partner[i] = j
                break
    return partner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data-root", help="override the checkpoint's cfg.data.root")
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0, help="of the held-out pairs")
    parser.add_argument("--joints", default="coco17", choices=("coco17", "blazepose33"))
    parser.add_argument("--distance", default="l1", choices=("l1", "euclidean"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the scores to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter()
    state = TrainState.from_checkpoint(args.checkpoint, torch.device("cpu"))
    cfg = state.cfg
    if args.data_root:
        cfg.data.root = args.data_root
    if cfg.data.source not in ("folder", "videos", "index"):
        parser.error(f"the keypoint judge is for people in user data (folder, videos, index), "
                     f"not {cfg.data.source!r}")
    source = open_source(cfg.data, cfg.model.image_size, False)
    pairs = source.held_out_pairs(args.pairs, seed=args.seed, split="test")
    pose = pairs["pose_image"]
    appearance = pairs["appearance_image"][other_identity(pairs["identity"])]
    model = state.eval_model
    with torch.no_grad():
        transfer = torch.cat([model.transfer(a, p) for a, p in
                              zip(appearance.split(250), pose.split(250))])
        self_rec = torch.cat([model.transfer(p, p) for p in pose.split(250)])
    size = pose.shape[-1]
    soft = F.interpolate(F.interpolate(pose, size=size // 2, mode="bilinear", antialias=True,
                                       align_corners=False),
                         size=size, mode="bilinear", align_corners=False).clamp(-1, 1)
    outputs = {"transfer": transfer, "self_reconstruction": self_rec,
               "pose_32px_round_trip": soft, "appearance_copied": appearance,
               "mean_frame": pose.mean(0, keepdim=True).expand_as(pose).contiguous()}
    detector = MediaPipePose(joints=args.joints)
    scores = keypoint_scores(detector, pose, outputs, distance=args.distance)
    detector.close()
    scores.update(checkpoint=str(args.checkpoint), step=state.step, source=cfg.data.source,
                  data_root=str(cfg.data.root), pairs=args.pairs, seed=args.seed,
                  seconds=round(time.perf_counter() - clock, 1))
    print(f"{args.checkpoint} (step {state.step}), {args.pairs} held-out pose frames of "
          f"{cfg.data.source} {cfg.data.root}")
    print(format_scores(scores))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(scores, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()

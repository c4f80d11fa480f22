"""FOMM's evaluation protocol on user data whose identities are clips with ordered frames (issue 17,
part 2; docs/method.md section 10).

The First Order Motion Model (Siarohin et al., NeurIPS 2019, section 4) scores video
reconstruction: for each held-out clip, the **appearance** input is the clip's first frame, the
**pose** input is frame t, and the **transfer** D(pi(frame t), alpha(frame 0)) is compared with
frame t itself, for every frame t of the clip (t = 0 included, as in FOMM's reconstruction loop).
Its headline number is the mean L1 distance on [0, 1] pixels over all frames of all held-out clips
(each frame weighs the same). rodi reports that L1 beside its own MSE (pixels in [-1, 1]), SSIM and
PSNR of the same renders, and beside two trivial outputs as floors:

- ``first_frame``: the appearance input copied (frame 0 for every t), which knows no motion;
- ``mean_frame``: the mean of the clip's own frames (every frame of that clip averaged, one image
  per clip), which knows the clip's average but no single pose.

With an appearance judge (:mod:`rodi.evaluation.reid`), also FOMM's AED: the distance between the
judge's embeddings of the output and of frame t.

rodi works at 64 x 64 pixels and FOMM at 256 x 256, and the clips, crops and splits differ, so
these numbers are not comparable with published ones; they compare models and floors on the same
data.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import torch
from tqdm.auto import tqdm

from rodi.data.folders import PairDataError
from rodi.data.protocols import OrderedFramesSource
from rodi.evaluation.triplets import image_quality
from rodi.models.networks import AppearancePoseModel

OUTPUTS = ("transfer", "first_frame", "mean_frame")  # what is scored against frame t
MEASURES = ("l1", "mse", "ssim", "psnr_db")  # and, with a judge, "aed"


def l1_distance(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute difference on [0, 1] pixels (FOMM's L1) of (B, 3, H, W) images and
    targets given in [-1, 1]: (B,), 0 for an exact copy, at most 1."""
    return (images.float() - targets.float()).abs().flatten(1).mean(1) / 2


def _scores(images: torch.Tensor, targets: torch.Tensor, judge,
            target_embeddings: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """(B,) ``l1``, ``mse``, ``ssim``, ``psnr_db`` and, with a judge, ``aed`` of images against
    targets, (B, 3, S, S) in [-1, 1]."""
    q = image_quality(images, targets)
    out = {"l1": l1_distance(images, targets), "mse": q["mse"], "ssim": q["ssim"],
           "psnr_db": q["psnr"]}
    if judge is not None:
        out["aed"] = (judge.embed(images) - target_embeddings).norm(dim=1)
    return {k: v.cpu() for k, v in out.items()}


@torch.no_grad()
def _score_clip(model: AppearancePoseModel, load: Callable[[torch.Tensor], torch.Tensor],
                count: int, judge=None, batch_size: int = 250,
                what: str = "a clip") -> dict[str, torch.Tensor]:
    if count < 2:
        raise PairDataError(f"{what} has {count} frame{'' if count == 1 else 's'}; FOMM's protocol "
                            "needs at least 2 (the first frame gives the appearance, every frame "
                            "the pose)")
    device = next(model.parameters()).device
    chunks = torch.arange(count).split(batch_size)
    total = None
    for positions in chunks:  # the mean frame first, without holding the clip in memory
        s = load(positions).double().sum(0)
        total = s if total is None else total + s
    mean_frame = (total / count).float().unsqueeze(0)
    first = load(torch.tensor([0]))
    scores = defaultdict(list)
    for positions in chunks:
        target = load(positions).to(device)
        n = len(target)
        appearance = first.to(device).expand(n, -1, -1, -1)
        outputs = {"transfer": model.transfer(appearance, target), "first_frame": appearance,
                   "mean_frame": mean_frame.to(device).expand(n, -1, -1, -1)}
        embedded = judge.embed(target) if judge is not None else None
        for name, images in outputs.items():
            for measure, v in _scores(images, target, judge, embedded).items():
                scores[f"{name}/{measure}"].append(v)
    return {k: torch.cat(v) for k, v in scores.items()}


def clip_scores(model: AppearancePoseModel, clip: torch.Tensor, judge=None,
                batch_size: int = 250) -> dict[str, torch.Tensor]:
    """Per-frame scores of one clip under FOMM's protocol (module docstring).

    Args:
        model: the model under test (its ``transfer``: appearance of the first argument in the
            pose of the second, (B, 3, S, S) in [-1, 1]).
        clip: (N, 3, S, S) float frames in [-1, 1], in time order; frame 0 is the appearance input.
        judge: an :class:`rodi.evaluation.reid.AppearanceJudge` for ``aed``, or None.

    Returns:
        ``<output>/<measure>``: (N,) per frame t, for output ``transfer``, ``first_frame`` and
        ``mean_frame`` and measure ``l1`` (on [0, 1]), ``mse`` (on [-1, 1]), ``ssim``, ``psnr_db``
        (see :func:`rodi.evaluation.triplets.image_quality`) and, with a judge, ``aed`` (embedding
        distance to frame t).

    Raises:
        PairDataError: the clip has fewer than 2 frames.
    """
    return _score_clip(model, lambda p: clip[p], len(clip), judge, batch_size)


def fomm_scores(model: AppearancePoseModel, source: OrderedFramesSource, split: str = "test",
                judge=None, batch_size: int = 250,
                progress: bool = False) -> dict[str, torch.Tensor]:
    """:func:`clip_scores` of every identity of ``split`` (each a clip, frames read in the order
    of :meth:`rodi.data.folders.PairImages.frames`), concatenated in identity order, with
    ``clip``: (frames,) long, the identity of each frame.

    Raises:
        PairDataError: the split holds no identities, or one of them has fewer than 2 frames.
        ValueError: ``source`` has no ordered frames (a rendered source).
    """
    if not isinstance(source, OrderedFramesSource):
        raise ValueError(f"{type(source).__name__} has no clips of ordered frames; FOMM's protocol "
                         "is for the folder, videos and index sources")
    ids = source.split(split)
    if len(ids) == 0:
        raise PairDataError(f"split {split!r} holds no identities: FOMM's protocol needs held-out "
                            "clips")
    scores = defaultdict(list)
    for i in tqdm(ids.tolist(), desc="FOMM protocol", unit="clip", disable=not progress,
                  leave=False):
        count = int(source.images_per_identity[i])
        clip = _score_clip(model, lambda p, i=i: source.frames(i, p), count, judge, batch_size,
                           what=f"held-out clip {source.identities[i]!r}")
        for k, v in clip.items():
            scores[k].append(v)
        scores["clip"].append(torch.full((count,), i, dtype=torch.long))
    return {k: torch.cat(v) for k, v in scores.items()}


def summarize_fomm(scores: dict[str, torch.Tensor], image_size: int) -> dict:
    """``metrics.json``'s ``fomm`` section from :func:`fomm_scores`: ``clips``, ``frames``,
    ``image_size`` and, per measure (``l1``, ``mse``, ``ssim``, ``psnr_db``, ``aed`` where
    judged), the mean over all frames of each output (``transfer``, ``first_frame``,
    ``mean_frame``)."""
    out = {"clips": int(scores["clip"].unique().numel()), "frames": int(len(scores["clip"])),
           "image_size": int(image_size)}
    for measure in (*MEASURES, "aed"):
        if f"transfer/{measure}" in scores:
            out[measure] = {name: scores[f"{name}/{measure}"].double().mean().item()
                            for name in OUTPUTS}
    return out

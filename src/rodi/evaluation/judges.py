"""Judges of transferred images: a pose estimator and an appearance attribute classifier, trained
once per dataset on its exact renders and cached.

Triplet MSE needs the exact target; the paper's peers instead ask whether the pose of the pose
input and the appearance of the appearance input both survive a transfer. Where a source renders
labelled characters exactly (``sprites``, ``flare``, ``mocap``), one network reads that off any
image (:class:`JudgeNet`):

- **pose**: the 2-D keypoints (mocap's 15 joints; a heat map per joint, soft-argmax to pixels) and
  the pose labels (action, direction, frame), scored against the pose input's truth;
- **appearance**: the appearance attributes (sprites and flare: the choice of every layer; mocap:
  the palette bin of skin, shirt, trousers, shoes and background, sleeve and trouser length, body
  scale), scored against the appearance input's truth.

The judge is a measuring instrument, not a model under test: it learns from renders of every
appearance in every pose (training and held-out splits alike), half of them blurred, so a blurry
transfer is judged by the pose and appearance it shows rather than by its sharpness. Its own score
on the exact targets is the ceiling printed beside every transfer score.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rodi.data.rendered import cached_arrays

JUDGE_VERSION = 1
PCK_THRESHOLDS = (0.05, 0.1)  # fractions of the image side


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rodi/judges`` or the OS equivalent."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("rodi")) / "judges"


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class JudgeNet(nn.Module):
    """Keypoints and label logits of (B, 3, S, S) images in [-1, 1].

    A shared trunk to S/4 feeds a heat-map head (one map per keypoint at S/4, soft-argmax to pixel
    coordinates) and a pooled head per label.

    Args:
        image_size: side S in pixels (a multiple of 16).
        classes: label name -> number of classes (pose labels and appearance attributes).
        num_keypoints: K; 0 for sources without keypoints.
        width: channels of the first layer.

    Raises:
        ValueError: ``image_size`` is not a multiple of 16.
    """

    def __init__(self, image_size: int, classes: dict[str, int], num_keypoints: int = 0, width: int = 32):
        super().__init__()
        if image_size % 16:
            raise ValueError(f"the judge needs an image side that is a multiple of 16, got {image_size}")
        self.image_size, self.classes, self.num_keypoints = image_size, dict(classes), num_keypoints
        w = width
        self.trunk = nn.Sequential(_block(3, w, 2), _block(w, 2 * w, 2), _block(2 * w, 2 * w, 1))
        # max pooling: a small region (shoes, a hand's skin) decides an attribute wherever it is
        self.pooled = nn.Sequential(_block(2 * w, 4 * w, 2), _block(4 * w, 8 * w, 2), nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.heads = nn.ModuleDict({k: nn.Linear(8 * w, c) for k, c in self.classes.items()})
        if num_keypoints:
            # dilated: a joint's heat map needs the context of the whole body (which wrist is it?)
            self.heatmaps = nn.Sequential(_block(2 * w, 2 * w, dilation=2), _block(2 * w, 2 * w, dilation=4),
                                          nn.Conv2d(2 * w, num_keypoints, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``keypoints``: (B, K, 2) float (x, y) in pixels of the S x S image (when K > 0); one
        (B, classes) logits tensor per label."""
        h = self.trunk(x)
        pooled = self.pooled(h)
        out = {k: head(pooled) for k, head in self.heads.items()}
        if self.num_keypoints:
            maps = self.heatmaps(h)  # (B, K, S/4, S/4)
            b, k, hh, ww = maps.shape
            prob = maps.flatten(2).softmax(-1).view(b, k, hh, ww)
            cell = self.image_size / hh
            ys = (torch.arange(hh, device=x.device, dtype=prob.dtype) + 0.5) * cell
            xs = (torch.arange(ww, device=x.device, dtype=prob.dtype) + 0.5) * cell
            out["keypoints"] = torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], dim=-1)
        return out


class Judge:
    """A trained :class:`JudgeNet` and which of its labels describe pose and which appearance (the
    source's ``pose_attributes`` and ``appearance_attributes``).

    Attributes:
        net: the network, in eval mode.
        pose_labels: label names scored against the pose input (action, direction, frame).
        appearance_labels: label names scored against the appearance input.
        train_steps: optimisation steps it was trained for.
    """

    def __init__(self, net: JudgeNet, source, train_steps: int):
        self.net = net.eval()
        self.pose_labels, self.appearance_labels = tuple(source.pose_attributes), tuple(source.appearance_attributes)
        self.train_steps = train_steps

    @property
    def has_keypoints(self) -> bool:
        return self.net.num_keypoints > 0

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``keypoints`` (B, K, 2) pixels where the source has them and one (B,) long prediction
        per label, on the CPU, for (B, 3, S, S) images in [-1, 1]."""
        device = next(self.net.parameters()).device
        out = self.net(images.to(device))
        return {k: (v if k == "keypoints" else v.argmax(1)).cpu() for k, v in out.items()}


def supports_judges(source) -> bool:
    """Whether ``source`` renders labelled characters exactly (what a judge learns from)."""
    return all(hasattr(source, a) for a in ("render", "characters", "labels", "appearance_attributes"))


def _classes(source) -> dict[str, int]:
    classes = {name: int(source.characters[:, i].max()) + 1 for i, name in enumerate(source.appearance_attributes)}
    classes.update({name: int(source.pose_labels[:, i].max()) + 1 for i, name in enumerate(source.pose_attributes)})
    return classes


def _new_net(source) -> JudgeNet:
    character, pose = _sample(source, 1, torch.Generator().manual_seed(0))
    keypoints = len(source.keypoints(character, pose)[0]) if hasattr(source, "keypoints") else 0
    return JudgeNet(source.render(character, pose).shape[-1], _classes(source), keypoints)


def _blur_half(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Blur a random half of the batch (2x box down, bilinear up), as transfers are blurry."""
    blurred = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear", align_corners=False)
    pick = torch.rand(len(x), generator=generator) < 0.5
    return torch.where(pick.view(-1, 1, 1, 1), blurred, x)


def _sample(source, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    character = torch.randint(len(source.characters), (n,), generator=generator)
    return character, torch.randint(source.num_poses, (n,), generator=generator)


def train_judge(source, steps: int, batch_size: int, seed: int = 0, lr: float = 3e-3,
                progress: bool = False) -> Judge:
    """Train a judge on exact renders of ``source`` (every appearance in every pose) for ``steps``
    steps of ``batch_size`` images (the defaults are ``evaluation.judge_steps`` and
    ``judge_batch_size`` in the config).

    Loss: the sum of the labels' cross-entropies plus, where the source has keypoints, the L1 error
    of the keypoints in units of the image side; Adam with the learning rate decaying linearly to 0.

    Raises:
        ValueError: ``source`` does not render labelled characters (see :func:`supports_judges`).
    """
    if not supports_judges(source):
        raise ValueError(f"{type(source).__name__} has no exact renders with labels to train a judge on")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = _new_net(source)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - i / steps)
    from tqdm.auto import tqdm

    for _ in tqdm(range(steps), desc="training the judge", disable=not progress, leave=False):
        character, pose = _sample(source, batch_size, g)
        x = _blur_half(source.render(character, pose), g)
        labels = source.labels(character, pose)
        out = net(x)
        loss = sum(F.cross_entropy(out[k], labels[k]) for k in net.classes)
        if net.num_keypoints:
            loss = loss + (out["keypoints"] - source.keypoints(character, pose)).abs().mean() / net.image_size
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return Judge(net, source, steps)


def _fingerprint(source, steps: int, batch_size: int, seed: int) -> str:
    """Changes whenever the source renders or labels differently, or the judge's recipe changes."""
    g = torch.Generator().manual_seed(1234)
    character, pose = _sample(source, 16, g)
    h = hashlib.sha256()
    h.update(source.render(character, pose).numpy().tobytes())
    for v in source.labels(character, pose).values():
        h.update(v.numpy().tobytes())
    if hasattr(source, "keypoints"):
        h.update(source.keypoints(character, pose).numpy().tobytes())
    h.update(json.dumps([JUDGE_VERSION, type(source).__name__, len(source.characters), source.num_poses,
                         _classes(source), steps, batch_size, seed]).encode())
    return h.hexdigest()[:16]


def load_or_train_judge(source, steps: int, batch_size: int, seed: int = 0,
                        cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Judge:
    """The judge of ``source`` from the cache, else trained with :func:`train_judge` and cached.

    The weights are stored as a plain ``.npz`` of arrays (no pickles) named by a fingerprint of the
    source's renders and labels and of the training recipe, so changed data trains a new judge.
    A cache that cannot be written only gives a warning.
    """
    fingerprint = _fingerprint(source, steps, batch_size, seed)
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = path / f"{type(source).__name__.lower()}-{fingerprint}.npz"
    template = _new_net(source)

    def build() -> dict[str, np.ndarray]:
        judge = train_judge(source, steps, batch_size, seed, progress=progress)
        return {k: v.numpy() for k, v in judge.net.state_dict().items()}

    arrays = cached_arrays(path, build, "the trained judge")
    template.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})
    return Judge(template, source, steps)


def keypoint_scores(predicted: torch.Tensor, truth: torch.Tensor, image_size: int) -> dict[str, torch.Tensor]:
    """Per-image keypoint accuracy.

    Args:
        predicted, truth: (B, K, 2) keypoints in pixels.
        image_size: side S in pixels; thresholds are fractions of it.

    Returns:
        ``pck@0.05`` and ``pck@0.1``: (B,) fraction in [0, 1] of keypoints within 0.05 S and 0.1 S
        of the truth (percentage of correct keypoints); ``pixel_error``: (B,) mean Euclidean error
        in pixels.
    """
    dist = (predicted - truth).norm(dim=-1)
    out = {f"pck@{t:g}": (dist <= t * image_size).float().mean(1) for t in PCK_THRESHOLDS}
    out["pixel_error"] = dist.mean(1)
    return out


FLOORS = ("input", "mean_image", "average_body")


@torch.no_grad()
def trivial_outputs(targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """The constant images that a transfer must beat: ``mean_image``, the pixel-wise mean of the
    held-out targets, and ``average_body``, the one target closest to that mean (a sharp body in
    the average pose and colours). Each (3, S, S) in [-1, 1], from (N, 3, S, S) targets."""
    mean = targets.float().mean(0)
    closest = (targets.float() - mean).square().flatten(1).sum(1).argmin()
    return {"mean_image": mean, "average_body": targets[closest].float()}


def judge_transfers(judge: Judge, batch: dict, transfers: torch.Tensor,
                    trivial: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Per-triplet scores of transfers, beside the exact targets' (the ceiling) and those of
    outputs that know nothing they should (the floors).

    Args:
        judge: the source's judge.
        batch: a triplet batch from ``triplets()``: ``appearance_image`` (A in q), ``pose_image``
            (B in p), ``target`` (A in p), their labels and, where the source has them,
            ``target_keypoints`` (B, K, 2) in pixels.
        transfers: (B, 3, S, S) in [-1, 1], D(pi(pose input), alpha(appearance input)).
        trivial: constant (3, S, S) images from :func:`trivial_outputs`, scored as further floors.

    Returns:
        (B,) float tensors named ``<group>/<metric>/<scored>``, ``scored`` being ``transfer``,
        ``ceiling`` (the target judged) or a floor: ``floor_input`` (for pose: the appearance
        input, which has the wrong pose; for appearance: the pose input, which has the wrong
        appearance), ``floor_mean_image`` and ``floor_average_body`` (the constant images).
        :func:`rodi.evaluation.report.summarize_judged` takes the best floor per metric.
        ``pose/pck@0.05``, ``pose/pck@0.1`` (fractions of keypoints within that fraction of the
        image side) and ``pose/pixel_error`` (pixels) compare with the target's keypoints, which
        are the pose input's joints on the appearance's body (mocap's body scale is appearance);
        ``pose/<label>`` and ``appearance/<attribute>`` are 1 where the prediction equals the pose
        input's label or the appearance input's attribute, else 0.
    """
    n = len(transfers)
    judged = {"transfer": (judge.predict(transfers),) * 2, "ceiling": (judge.predict(batch["target"]),) * 2,
              "floor_input": (judge.predict(batch["appearance_image"]), judge.predict(batch["pose_image"]))}
    for name, image in (trivial or {}).items():
        constant = {k: v.expand(n, *v.shape[1:]) for k, v in judge.predict(image[None]).items()}
        judged[f"floor_{name}"] = (constant, constant)
    size = transfers.shape[-1]
    out = {}
    for scored, (pose, look) in judged.items():
        if judge.has_keypoints:
            for name, v in keypoint_scores(pose["keypoints"], batch["target_keypoints"], size).items():
                out[f"pose/{name}/{scored}"] = v
        for name in judge.pose_labels:
            out[f"pose/{name}/{scored}"] = (pose[name] == batch[f"pose_{name}"]).float()
        for name in judge.appearance_labels:
            out[f"appearance/{name}/{scored}"] = (look[name] == batch[f"appearance_{name}"]).float()
    return out

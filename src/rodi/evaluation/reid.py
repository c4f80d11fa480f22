"""An appearance judge for any identity data: a small re-identification embedding, trained once per
dataset on its training identities and cached (issue 17, part 4; docs/method.md section 10).

FOMM's AED (Siarohin et al., NeurIPS 2019, section 4) reads the appearance of a render with a
re-identification network. User data has no appearance labels, but it has identities, so rodi
learns one: :class:`AppearanceNet` maps an image to a unit-length vector, trained with a batch-hard
triplet loss (Hermans, Beyer & Leibe 2017) so that images of one training identity lie closer
together than images of two. Distances between embeddings are Euclidean, in [0, 2].

On held-out identities it scores **cross-identity transfers**, which same-identity pairs cannot:
appearance from a frame of identity A, pose from a frame of identity B, and

- ``to_appearance``: the distance of the output to *another* frame of A (low: A's appearance kept);
- ``to_pose``: its distance to the pose input, B's frame (high: B's appearance did not leak in),

for the transfer and for the trivial outputs as references: the appearance input copied (the best
``to_appearance`` an output can have without knowing A's other frame, and a wrong pose), the pose
input copied (the worst; its ``to_pose`` is 0), and the self-reconstruction D(pi(a), alpha(a))
(what the model renders of A's appearance when nothing has to be disentangled). Copying the
appearance input scores well here, so read it together with the pose (FOMM's L1 on the same data,
:mod:`rodi.evaluation.fomm`).

The judge's own quality is reported with it (:func:`judge_quality`), on held-out identities it never
saw: re-identification top-1 (each frame matched to the nearest first frame of a held-out identity),
and how much closer two frames of one identity are than two frames of two (the distance gap and the
AUC, the chance that a same-identity pair is closer than a different-identity pair; 0.5 is chance).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.classification import binary_auroc
from tqdm.auto import tqdm

from rodi.atomic import read_safetensors, write_safetensors
from rodi.cache import user_cache
from rodi.data.folders import PairDataError
from rodi.data.protocols import OrderedFramesSource
from rodi.models.networks import AppearancePoseModel

REID_VERSION = 1
REID_FORMAT = "rodi-appearance-judge"
IMAGES_PER_IDENTITY = 4  # of each training batch: P identities x 4 images
MARGIN = 0.2  # of the triplet loss, in units of the embedding distance (0..2)
LR = 1e-3
EMBEDDING = 64
WIDTH = 16
SHIFT = 4  # pixels: random translation of training images (crops move by a few pixels)
QUALITY_FRAMES = 64  # at most this many frames of each held-out identity, evenly spaced


class _FileError(Exception):
    """A cached judge that cannot be used (it is trained again)."""


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class AppearanceNet(nn.Module):
    """Unit-length appearance embeddings of (B, 3, S, S) images in [-1, 1]: (B, ``dim``).

    Four stride-2 convolutions, then the mean and the maximum of the last features over the image
    (the mean colour of clothes, and small parts wherever they are), then a linear map.
    """

    def __init__(self, width: int = WIDTH, dim: int = EMBEDDING):
        super().__init__()
        w = width
        self.trunk = nn.Sequential(_block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w),
                                   _block(4 * w, 8 * w))
        self.head = nn.Linear(16 * w, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3))], dim=1)
        return F.normalize(self.head(pooled), dim=1)


@dataclass
class AppearanceJudge:
    """A trained :class:`AppearanceNet` and its recipe.

    Attributes:
        net: the network, in eval mode.
        train_steps, batch_size, seed: its recipe (see :func:`train_appearance_judge`).
        train_identities: how many identities it learnt from.
        origin: ``trained`` or ``cache``.
        fingerprint: of the data and recipe (see :func:`load_or_train_appearance_judge`), or None.
    """

    net: AppearanceNet
    train_steps: int
    batch_size: int
    seed: int
    train_identities: int
    origin: str = "trained"
    fingerprint: str | None = None

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """(B, D) unit-length embeddings, on the device of ``images``, of (B, 3, S, S) images in
        [-1, 1]."""
        self.net.eval()
        device = next(self.net.parameters()).device
        out = [self.net(x.to(device)).to(images.device) for x in images.float().split(batch_size)]
        return torch.cat(out) if out else images.new_zeros(0, self.net.head.out_features)


def triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor,
                 margin: float = MARGIN) -> torch.Tensor:
    """Batch-hard triplet loss: for each anchor, its farthest positive (same label, other image)
    against its nearest negative, ``mean(relu(d_pos - d_neg + margin))``.

    Args:
        embeddings: (B, D).
        labels: (B,) long; the batch must hold two labels and a second image of each.
    """
    d = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    hardest_positive = d.masked_fill(~same | eye, 0).amax(1)
    hardest_negative = d.masked_fill(same, float("inf")).amin(1)
    return F.relu(hardest_positive - hardest_negative + margin).mean()


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror half the images, shift each by up to :data:`SHIFT` pixels (edges repeated) and blur
    half (2x box down, bilinear up), as transfers are blurry; colours are left alone, since they
    are appearance."""
    b, _, s, _ = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    padded = F.pad(x, (SHIFT,) * 4, mode="replicate")
    dx, dy = (torch.randint(2 * SHIFT + 1, (b,), generator=generator) for _ in range(2))
    x = torch.stack([padded[i, :, dy[i]:dy[i] + s, dx[i]:dx[i] + s] for i in range(b)])
    blurred = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear",
                            align_corners=False)
    pick = torch.rand(b, generator=generator) < 0.5
    return torch.where(pick.view(-1, 1, 1, 1), blurred, x)


def _batch(source: OrderedFramesSource, identities: torch.Tensor, batch_size: int,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """P = batch_size // 4 identities (without repeats where there are enough), 4 images each."""
    p = max(2, batch_size // IMAGES_PER_IDENTITY)
    pick = (torch.randperm(len(identities), generator=generator)[:p] if len(identities) >= p
            else torch.randint(len(identities), (p,), generator=generator))
    chosen = identities[pick]
    images = []
    for i in chosen.tolist():
        count = int(source.images_per_identity[i])
        images.append(source.frames(i, torch.randint(count, (IMAGES_PER_IDENTITY,),
                                                     generator=generator)))
    return torch.cat(images), chosen.repeat_interleave(IMAGES_PER_IDENTITY)


def train_appearance_judge(source: OrderedFramesSource, steps: int = 400, batch_size: int = 32,
                           seed: int = 0, identities: torch.Tensor | None = None,
                           device: torch.device | None = None,
                           progress: bool = False) -> AppearanceJudge:
    """Train an :class:`AppearanceNet` on ``identities`` of ``source`` (default: its ``train``
    split) for ``steps`` Adam steps (learning rate :data:`LR` decaying linearly to 0) of
    ``batch_size`` images: ``batch_size // 4`` identities with 4 images each (augmented, see
    :func:`_augment`), loss :func:`triplet_loss`.

    Raises:
        PairDataError: fewer than 2 identities to learn from.
        ValueError: ``steps`` or ``batch_size`` below 1 or 8.
    """
    identities = source.split("train") if identities is None else torch.as_tensor(identities)
    if len(identities) < 2:
        raise PairDataError(f"the appearance judge needs at least 2 training identities to tell "
                            f"apart, got {len(identities)}")
    if steps < 1 or batch_size < 2 * IMAGES_PER_IDENTITY:
        raise ValueError(f"the appearance judge needs steps >= 1 and batch_size >= "
                         f"{2 * IMAGES_PER_IDENTITY}, got {steps} and {batch_size}")
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = AppearanceNet().to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - i / steps)
    for _ in tqdm(range(steps), desc="training the appearance judge", disable=not progress,
                  leave=False):
        images, labels = _batch(source, identities, batch_size, g)
        loss = triplet_loss(net(_augment(images, g).to(device)), labels.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return AppearanceJudge(net.eval(), steps, batch_size, seed, len(identities))


def _fingerprint(source: OrderedFramesSource, identities: torch.Tensor, steps: int,
                 batch_size: int, seed: int) -> str:
    """Changes with the images (the source's own fingerprint), the identities learnt from, or the
    recipe."""
    recipe = [REID_VERSION, source.fingerprint, [source.identities[i] for i in identities.tolist()],
              source.image_size, steps, batch_size, seed, LR, MARGIN, EMBEDDING, WIDTH, SHIFT,
              IMAGES_PER_IDENTITY]
    return hashlib.sha256(json.dumps(recipe).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _read(path: Path, fingerprint: str) -> AppearanceJudge:
    meta, tensors = read_safetensors(path, _FileError)
    if meta.get("format") != REID_FORMAT or meta.get("fingerprint") != fingerprint:
        raise _FileError(f"{path} is not the appearance judge {fingerprint}")
    net = AppearanceNet()
    try:
        net.load_state_dict(tensors)
        recipe = json.loads(meta["recipe"])
        return AppearanceJudge(net.eval(), int(recipe["steps"]), int(recipe["batch_size"]),
                               int(recipe["seed"]), int(recipe["train_identities"]), "cache",
                               fingerprint)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise _FileError(f"{path}: {err}") from None


def load_or_train_appearance_judge(source: OrderedFramesSource, steps: int = 400,
                                   batch_size: int = 32, seed: int = 0,
                                   cache_dir: str | os.PathLike | None = None,
                                   device: torch.device | None = None,
                                   progress: bool = True) -> AppearanceJudge:
    """The appearance judge of ``source``'s training identities: from the cache where its
    fingerprint (the source's :attr:`fingerprint`, the training identities' names and the recipe)
    matches, else trained with :func:`train_appearance_judge` and cached.

    The cache (``cache_dir``, default the user cache's ``judges`` folder) holds a safetensors file,
    ``appearance-<fingerprint>.safetensors``, written atomically; a file that cannot be read is
    trained again and replaced, and a folder that cannot be written only gives a warning.

    Raises:
        PairDataError: fewer than 2 training identities.
    """
    identities = source.split("train")
    fingerprint = _fingerprint(source, identities, steps, batch_size, seed)
    folder = Path(cache_dir) if cache_dir is not None else user_cache("judges")
    path = folder / f"appearance-{fingerprint}.safetensors"
    if path.is_file():
        try:
            judge = _read(path, fingerprint)
            judge.net.to(device or torch.device("cpu"))
            return judge
        except _FileError:
            pass
    judge = train_appearance_judge(source, steps, batch_size, seed, identities, device, progress)
    judge.fingerprint = fingerprint
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in judge.net.state_dict().items()}
    recipe = {"steps": steps, "batch_size": batch_size, "seed": seed, "lr": LR, "margin": MARGIN,
              "train_identities": len(identities), "image_size": source.image_size}
    try:
        write_safetensors(tensors, path, {"format": REID_FORMAT, "fingerprint": fingerprint,
                                          "version": str(REID_VERSION),
                                          "recipe": json.dumps(recipe)})
    except OSError as err:
        warnings.warn(f"could not cache the appearance judge in {folder} ({err}); it will be "
                      "trained again next time", stacklevel=2)
    return judge


def _held_out(source: OrderedFramesSource, split: str, what: str) -> torch.Tensor:
    ids = source.split(split)
    if len(ids) < 2:
        raise PairDataError(f"{what} needs at least 2 held-out identities in split {split!r}, got "
                            f"{len(ids)}")
    return ids


def _auc(same: torch.Tensor, different: torch.Tensor) -> float:
    """P(a same-identity distance < a different-identity distance), ties counted half: the ROC
    AUC of the distance as a score for "different identity" (torchmetrics)."""
    scores = torch.cat([same, different]).double()
    labels = torch.cat([torch.zeros(len(same)), torch.ones(len(different))]).long()
    return binary_auroc(scores, labels).item()


@torch.no_grad()
def judge_quality(judge: AppearanceJudge, source: OrderedFramesSource,
                  split: str = "test") -> dict:
    """How well the judge tells apart the identities of ``split`` (which it never saw), from up to
    :data:`QUALITY_FRAMES` evenly spaced frames of each.

    Returns:
        ``identities`` (K), ``frames``; ``top1``: the share of frames (first frames left out)
        whose nearest first frame among the K identities is their own, with ``top1_chance`` 1/K;
        ``same_distance`` and ``different_distance``: the mean embedding distance of two frames of
        one identity and of two identities; ``auc``: the chance that a same-identity pair is closer
        than a different-identity pair (0.5 is chance, 1 perfect).

    Raises:
        PairDataError: the split holds fewer than 2 identities.
    """
    ids = _held_out(source, split, "the appearance judge's quality")
    embeddings, labels, first = [], [], []
    for i in ids.tolist():
        count = int(source.images_per_identity[i])
        positions = torch.linspace(0, count - 1, min(count, QUALITY_FRAMES)).round().long()
        positions = positions.unique()
        e = judge.embed(source.frames(i, positions))
        first.append(e[0])
        embeddings.append(e)
        labels.append(torch.full((len(e),), i, dtype=torch.long))
    e, labels = torch.cat(embeddings), torch.cat(labels)
    is_first = torch.cat([torch.arange(len(x)) == 0 for x in embeddings])
    nearest = torch.cdist(e[~is_first], torch.stack(first)).argmin(1)
    top1 = (ids[nearest] == labels[~is_first]).double().mean().item()
    d = torch.cdist(e, e)
    same = labels[:, None] == labels[None, :]
    upper = torch.ones_like(same).triu(1)
    d_same, d_diff = d[same & upper], d[~same & upper]
    return {"identities": len(ids), "frames": len(e), "top1": top1, "top1_chance": 1 / len(ids),
            "same_distance": d_same.mean().item(), "different_distance": d_diff.mean().item(),
            "auc": _auc(d_same, d_diff)}


def cross_identity_pairs(source: OrderedFramesSource, n: int, seed: int = 0,
                         split: str = "test") -> dict[str, torch.Tensor]:
    """``n`` fixed cross-identity inputs of ``split``: ``appearance_image`` (a frame of identity
    A), ``other_image`` (another frame of A), ``pose_image`` (a frame of identity B != A), each
    (n, 3, S, S) float32 in [-1, 1], and ``appearance_identity``, ``pose_identity``, (n,) long.
    The same for the same ``seed``.

    Raises:
        PairDataError: the split holds fewer than 2 identities.
    """
    ids = _held_out(source, split, "cross-identity transfers")
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(len(ids), (n,), generator=g)
    b = (a + 1 + torch.randint(len(ids) - 1, (n,), generator=g)) % len(ids)
    a, b = ids[a], ids[b]
    counts_a, counts_b = source.images_per_identity[a], source.images_per_identity[b]
    first = (torch.rand(n, generator=g, dtype=torch.float64) * counts_a).long()
    shift = 1 + (torch.rand(n, generator=g, dtype=torch.float64) * (counts_a - 1)).long()
    other = (first + shift) % counts_a
    pose = (torch.rand(n, generator=g, dtype=torch.float64) * counts_b).long()

    def read(identity: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        return torch.cat([source.frames(int(i), p.view(1)) for i, p in zip(identity, position)])

    return {"appearance_image": read(a, first), "other_image": read(a, other),
            "pose_image": read(b, pose), "appearance_identity": a, "pose_identity": b}


CROSS_OUTPUTS = ("transfer", "appearance_copied", "pose_copied", "self_reconstruction")


@torch.no_grad()
def appearance_distances(model: AppearancePoseModel, judge: AppearanceJudge,
                         source: OrderedFramesSource, n: int = 1000, seed: int = 0,
                         split: str = "test", batch_size: int = 250) -> dict[str, torch.Tensor]:
    """Per-pair embedding distances of cross-identity outputs (module docstring) on ``n`` pairs of
    :func:`cross_identity_pairs`.

    Returns:
        ``<output>/to_appearance`` (to another frame of A) and ``<output>/to_pose`` (to B's frame),
        (n,) each, for output ``transfer`` D(mean pi(B's frame), alpha(A's frame)),
        ``appearance_copied``, ``pose_copied`` and ``self_reconstruction`` D(mean pi(a),
        alpha(a)).

    Raises:
        PairDataError: the split holds fewer than 2 identities.
    """
    device = next(model.parameters()).device
    pairs = cross_identity_pairs(source, n, seed, split)
    scores: dict[str, list[torch.Tensor]] = {}
    for app, other, pose in zip(*(pairs[k].split(batch_size)
                                  for k in ("appearance_image", "other_image", "pose_image"))):
        app, pose = app.to(device), pose.to(device)
        outputs = {"transfer": model.transfer(app, pose), "appearance_copied": app,
                   "pose_copied": pose, "self_reconstruction": model.transfer(app, app)}
        e_other, e_pose = judge.embed(other.to(device)), judge.embed(pose)
        for name, images in outputs.items():
            e = judge.embed(images)
            for k, v in (("to_appearance", e - e_other), ("to_pose", e - e_pose)):
                scores.setdefault(f"{name}/{k}", []).append(v.norm(dim=1).cpu())
    return {k: torch.cat(v) for k, v in scores.items()}


def summarize_distances(scores: dict[str, torch.Tensor]) -> dict:
    """``metrics.json``'s ``appearance_distance`` section: ``pairs``; ``to_appearance`` and
    ``to_pose``, each the mean distance of every output of :data:`CROSS_OUTPUTS`; and
    ``normalised``, (pose_copied - transfer) / (pose_copied - appearance_copied) of
    ``to_appearance``: 0 as far from A as B's frame is, 1 as close as A's own other frame (not
    clipped; None where the two references coincide)."""
    out = {"pairs": int(len(scores["transfer/to_appearance"]))}
    for k in ("to_appearance", "to_pose"):
        out[k] = {name: scores[f"{name}/{k}"].double().mean().item() for name in CROSS_OUTPUTS}
    a = out["to_appearance"]
    span = a["pose_copied"] - a["appearance_copied"]
    out["normalised"] = (a["pose_copied"] - a["transfer"]) / span if abs(span) > 1e-12 else None
    return out

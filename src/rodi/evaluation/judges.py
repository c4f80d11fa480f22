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

Judges of the built-in sources ship inside the package (``rodi/assets/judges``, written by
``rodi judge``): a safetensors file named by the fingerprint of the renders it was trained on, with
its recipe, ceilings, licence and credit in the metadata. :func:`load_or_train_judge` uses the
shipped file whenever the fingerprint matches, so every user's scores come from the same instrument;
other settings (another image size, say) train a judge once and cache it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from rodi.atomic import read_safetensors, write_safetensors
from rodi.cache import user_cache
from rodi.data.protocols import KeypointSource, LabelledSource
from rodi.data.rendered import cached_arrays
from rodi.evaluation.metrics import lower_is_better

JUDGE_VERSION = 1
JUDGE_FORMAT = "rodi-judge"
SHIPPED_JUDGES = Path(__file__).resolve().parent.parent / "assets" / "judges"
JUDGE_LR = 3e-3
BLURRED_FRACTION = 0.5  # of each training batch (see _blur_half)
JUDGE_WIDTH = 32  # channels of the first layer of the shipped judges (JudgeNet's default)
KEYPOINT_QUANTUM = 1 / 16  # pixels: keypoints are hashed at this resolution, not at float precision
PCK_THRESHOLDS = (0.05, 0.1)  # fractions of the image side


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class JudgeNet(nn.Module):
    """Keypoints and label logits of (B, 3, S, S) images in [-1, 1].

    A shared trunk to S/4 feeds a heat-map head (one map per keypoint at S/4, soft-argmax to pixel
    coordinates) and a pooled head per label.

    Args:
        image_size: side S in pixels (a multiple of 16).
        classes: label name -> number of classes (pose labels and appearance attributes).
        num_keypoints: K; 0 for sources without keypoints.
        width: channels of the first layer.
        first_stride: 2 (the shipped judges) or 1: the first layer then keeps full resolution and
            the third down-samples instead, so the trunk still ends at S/4 (a recipe that
            ``benchmarks/judge_ceilings.py`` measures; docs/results/learning-speed/judge-ceilings).

    Raises:
        ValueError: ``image_size`` is not a multiple of 16, or ``first_stride`` is not 1 or 2.
    """

    def __init__(self, image_size: int, classes: dict[str, int], num_keypoints: int = 0,
                 width: int = JUDGE_WIDTH, first_stride: int = 2):
        super().__init__()
        if image_size % 16:
            raise ValueError("the judge needs an image side that is a multiple of 16, got "
                             f"{image_size}")
        self.image_size, self.classes, self.num_keypoints = image_size, dict(classes), num_keypoints
        if first_stride not in (1, 2):
            raise ValueError(f"the judge's first_stride must be 1 or 2, got {first_stride}")
        w = width
        self.trunk = nn.Sequential(_block(3, w, first_stride), _block(w, 2 * w, 2),
                                   _block(2 * w, 2 * w, 3 - first_stride))
        # max pooling: a small region (shoes, a hand's skin) decides an attribute wherever it is
        self.pooled = nn.Sequential(_block(2 * w, 4 * w, 2), _block(4 * w, 8 * w, 2),
                                    nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.heads = nn.ModuleDict({k: nn.Linear(8 * w, c) for k, c in self.classes.items()})
        if num_keypoints:
            # dilated: a joint's heat map needs the context of the whole body (which wrist is it?)
            self.heatmaps = nn.Sequential(_block(2 * w, 2 * w, dilation=2),
                                          _block(2 * w, 2 * w, dilation=4),
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
            out["keypoints"] = torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)],
                                           dim=-1)
        return out


class Judge:
    """A trained :class:`JudgeNet` and which of its labels describe pose and which appearance (the
    source's ``pose_attributes`` and ``appearance_attributes``).

    Attributes:
        net: the network, in eval mode.
        pose_labels: label names scored against the pose input (action, direction, frame).
        appearance_labels: label names scored against the appearance input.
        train_steps: optimisation steps it was trained for.
        batch_size, seed, lr: the rest of its recipe (see :func:`train_judge`).
        origin: where it came from: ``shipped`` (a file in the package), ``cache`` or ``trained``.
        fingerprint: the fingerprint of the renders and recipe (see :func:`load_or_train_judge`),
            or None for a judge trained outside it.
    """

    def __init__(self, net: JudgeNet, source, train_steps: int, batch_size: int, seed: int = 0,
                 lr: float = JUDGE_LR, origin: str = "trained", fingerprint: str | None = None):
        self.net = net.eval()
        self.pose_labels, self.appearance_labels = (tuple(source.pose_attributes),
                                                    tuple(source.appearance_attributes))
        self.train_steps, self.batch_size, self.seed, self.lr = train_steps, batch_size, seed, lr
        self.origin, self.fingerprint = origin, fingerprint

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
    return isinstance(source, LabelledSource)


def _classes(source) -> dict[str, int]:
    classes = {name: int(source.characters[:, i].max()) + 1
               for i, name in enumerate(source.appearance_attributes)}
    classes.update({name: int(source.pose_labels[:, i].max()) + 1
                    for i, name in enumerate(source.pose_attributes)})
    return classes


def _new_net(source, width: int = JUDGE_WIDTH, first_stride: int = 2) -> JudgeNet:
    # any one render does (not an evaluation seed): only its size and keypoint count are read
    character, pose = _sample(source, 1, torch.Generator().manual_seed(0))
    keypoints = (len(source.keypoints(character, pose)[0]) if isinstance(source, KeypointSource)
                 else 0)
    return JudgeNet(source.render(character, pose).shape[-1], _classes(source), keypoints, width,
                    first_stride)


def _blur_half(x: torch.Tensor, generator: torch.Generator,
               fraction: float = BLURRED_FRACTION) -> torch.Tensor:
    """Blur a random ``fraction`` of the batch (2x box down, bilinear up), as transfers are
    blurry."""
    blurred = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear",
                            align_corners=False)
    pick = torch.rand(len(x), generator=generator) < fraction
    return torch.where(pick.view(-1, 1, 1, 1), blurred, x)


def _sample(source, n: int, generator: torch.Generator,
            pose_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    character = torch.randint(len(source.characters), (n,), generator=generator)
    if pose_weights is not None:
        return character, torch.multinomial(pose_weights, n, replacement=True, generator=generator)
    return character, torch.randint(source.num_poses, (n,), generator=generator)


def train_judge(source, steps: int, batch_size: int, seed: int = 0, lr: float = JUDGE_LR,
                progress: bool = False, *, width: int = JUDGE_WIDTH, first_stride: int = 2,
                blurred_fraction: float = BLURRED_FRACTION,
                pose_weights: torch.Tensor | None = None) -> Judge:
    """Train a judge on exact renders of ``source`` (every appearance in every pose) for ``steps``
    steps of ``batch_size`` images (the defaults are ``evaluation.judge_steps`` and
    ``judge_batch_size`` in the config).

    Loss: the sum of the labels' cross-entropies plus, where the source has keypoints, the L1 error
    of the keypoints in units of the image side; Adam with the learning rate decaying linearly to 0.
    The keyword-only options change the recipe away from the shipped judges' (which use their
    defaults, and whose fingerprints assume them); ``benchmarks/judge_ceilings.py`` measures them.

    Args:
        width, first_stride: of the :class:`JudgeNet`.
        blurred_fraction: of each batch blurred (see :func:`_blur_half`), in [0, 1].
        pose_weights: (P,) non-negative sampling weight of each pose, or None (uniform).

    Raises:
        ValueError: ``source`` does not render labelled characters (see :func:`supports_judges`),
            or ``pose_weights`` is not (P,) with a positive sum.
    """
    if not supports_judges(source):
        raise ValueError(f"{type(source).__name__} has no exact renders with labels to train a "
                         "judge on")
    if pose_weights is not None and (pose_weights.shape != (source.num_poses,)
                                     or not float(pose_weights.sum()) > 0):
        raise ValueError(f"the judge's pose_weights must be ({source.num_poses},) with a positive "
                         f"sum, got shape {tuple(pose_weights.shape)}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = _new_net(source, width, first_stride)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - i / steps)
    for _ in tqdm(range(steps), desc="training the judge", disable=not progress, leave=False):
        character, pose = _sample(source, batch_size, g, pose_weights)
        x = _blur_half(source.render(character, pose), g, blurred_fraction)
        labels = source.labels(character, pose)
        out = net(x)
        loss = sum(F.cross_entropy(out[k], labels[k]) for k in net.classes)
        if net.num_keypoints:
            loss = loss + ((out["keypoints"] - source.keypoints(character, pose)).abs().mean()
                           / net.image_size)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return Judge(net, source, steps, batch_size, seed, lr)


def _coverage(source) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed sample of (character, pose) index pairs in which every value of every appearance
    attribute and of every pose label appears at least once (and at least 16 pairs)."""
    def firsts(table: torch.Tensor) -> list[int]:
        picked = set()
        for column in table.T:
            for value in column.unique():
                picked.add(int(torch.nonzero(column == value)[0, 0]))
        return sorted(picked)

    chars, poses = firsts(source.characters), firsts(source.pose_labels)
    n = max(len(chars), len(poses), 16)
    character = torch.tensor([chars[i % len(chars)] for i in range(n)])
    pose = torch.tensor([poses[(7 * i) % len(poses)] for i in range(n)])  # 7: mixes pairings
    return character, pose


def _fingerprint(source, steps: int, batch_size: int, seed: int) -> str:
    """Changes whenever the source renders or labels differently, or the judge's recipe changes.

    It hashes the whole label tables, uint8 renders of :func:`_coverage`'s sample (every attribute
    value and pose label drawn at least once) and their keypoints at 1/16 pixel, with the recipe
    (steps, batch size, seed, learning rate, network width, blurred fraction). Quantising keeps the
    last float bits of a platform's maths out of it; covering every value keeps a changed layer or
    palette entry from going unseen.
    """
    character, pose = _coverage(source)
    h = hashlib.sha256()
    h.update(source.characters.long().numpy().tobytes())
    h.update(source.pose_labels.long().numpy().tobytes())
    pixels = ((source.render(character, pose) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    h.update(pixels.numpy().tobytes())
    for v in source.labels(character, pose).values():
        h.update(v.long().numpy().tobytes())
    if isinstance(source, KeypointSource):
        h.update(
            (source.keypoints(character, pose) / KEYPOINT_QUANTUM).round().long().numpy().tobytes())
    h.update(json.dumps([JUDGE_VERSION, type(source).__name__, len(source.characters),
                         source.num_poses, _classes(source), steps, batch_size, seed, JUDGE_LR,
                         JUDGE_WIDTH, BLURRED_FRACTION]).encode())
    return h.hexdigest()[:16]


class JudgeFileError(RuntimeError):
    """A shipped judge file is unreadable or does not describe the source it is asked for."""


def _file_name(source, fingerprint: str, suffix: str) -> str:
    return f"{type(source).__name__.lower()}-{fingerprint}{suffix}"


def shipped_judge_path(source, steps: int, batch_size: int, seed: int = 0,
                       shipped_dir: str | os.PathLike | None = None,
                       fingerprint: str | None = None) -> Path:
    """Where the shipped judge of ``source`` with this recipe is, or would be (it may not exist);
    ``fingerprint``, where the caller has computed it already, saves rendering its sample again."""
    folder = Path(shipped_dir) if shipped_dir is not None else SHIPPED_JUDGES
    fingerprint = fingerprint or _fingerprint(source, steps, batch_size, seed)
    return folder / _file_name(source, fingerprint, ".safetensors")


def read_judge_file(path: str | os.PathLike, source) -> tuple[Judge, dict]:
    """A judge written by :func:`write_judge_file`, and its metadata (``recipe``, ``ceilings``,
    ``check``, ``licence``, ``credit``, ... decoded from JSON where they are JSON).

    Raises:
        JudgeFileError: the file is unreadable, is not a judge, or its weights do not fit
            ``source``'s judge network.
    """
    raw, tensors = read_safetensors(path, JudgeFileError)
    if raw.get("format") != JUDGE_FORMAT or raw.get("judge_version") != str(JUDGE_VERSION):
        raise JudgeFileError(f"{path} is not a rodi judge of version {JUDGE_VERSION} "
                             f"(format {raw.get('format')!r}, "
                             f"version {raw.get('judge_version')!r})")
    meta = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except ValueError:
            meta[k] = v
    net = _new_net(source)
    try:
        net.load_state_dict({k: v.float() for k, v in tensors.items()})
    except RuntimeError as err:
        raise JudgeFileError(f"{path}: its weights do not fit the judge of "
                             f"{type(source).__name__} ({err})") from None
    try:
        recipe = meta["recipe"]
        return Judge(net, source, int(recipe["steps"]), int(recipe["batch_size"]),
                     int(recipe["seed"]), float(recipe["lr"]), "shipped",
                     str(meta["fingerprint"])), meta
    except (KeyError, TypeError, ValueError) as err:
        raise JudgeFileError(f"{path}: its metadata lacks a usable recipe or fingerprint "
                             f"({err!r})") from None


def write_judge_file(judge: Judge, source, path: str | os.PathLike, ceilings: dict, check: dict,
                     licence: str, credit: str) -> Path:
    """Write ``judge`` as safetensors (float32 weights) with the fingerprint, recipe, ceilings and
    provenance in its metadata; :func:`read_judge_file` reads it back.

    Args:
        ceilings: :func:`judge_ceilings` on the evaluation's held-out triplets.
        check: :func:`judge_ceilings` on a small sample, which a test reproduces from the file.
        licence, credit: of the art the judge learnt from (it is a derived work of it).

    Raises:
        OSError: the file cannot be written (nothing is left at ``path`` then).
    """
    metadata = {
        "format": JUDGE_FORMAT, "judge_version": str(JUDGE_VERSION),
        "source": type(source).__name__,
        "fingerprint": judge.fingerprint, "licence": licence, "credit": credit,
        "recipe": json.dumps({"steps": judge.train_steps, "batch_size": judge.batch_size,
                              "seed": judge.seed, "lr": judge.lr,
                              "blurred_fraction": BLURRED_FRACTION, "classes": judge.net.classes,
                              "num_keypoints": judge.net.num_keypoints,
                              "image_size": judge.net.image_size}),
        "ceilings": json.dumps(ceilings), "check": json.dumps(check),
    }
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in judge.net.state_dict().items()}
    return write_safetensors(tensors, path, metadata)


@torch.no_grad()
def judge_ceilings(judge: Judge, source, n: int, seed: int, split: str = "test") -> dict:
    """The judge's scores on the exact targets of ``n`` held-out triplets
    (``source.triplet_indices(n, seed, split)``; the test split as ``rodi evaluate`` draws it, or
    ``validation`` to compare judge recipes without the test data): ``pose`` per metric
    (``pck@0.05``, ``pck@0.1`` in [0, 1], ``pixel_error`` in pixels, one accuracy per pose label)
    and ``appearance`` per attribute, each a float; plus ``n`` and ``seed``."""
    scores: dict[str, list[torch.Tensor]] = {}
    indices = source.triplet_indices(n, seed, split)
    for chunk in indices.split(250):
        batch = source.triplets(chunk)
        batch.update(target_equivalents(source, chunk))
        for k, v in judge_transfers(judge, batch, batch["target"]).items():
            if k.endswith("/ceiling"):
                scores.setdefault(k, []).append(v)
    summary = summarize_judged({k: torch.cat(v) for k, v in scores.items()})
    return {"n": n, "seed": seed,
            "pose": {k: v["ceiling"] for k, v in summary["pose_accuracy"].items()},
            "appearance": {k: v["ceiling"] for k, v in summary["appearance_retention"].items()
                           if k != "mean"}}


LICENCES = {  # source class -> (licence, credit) of the renders a judge learns from
    "MocapHumanoid": ("zlib (the renders' assets); the weights MIT like rodi",
                      "pybullet's humanoid and its DeepMimic motion clips (pybullet_data, zlib "
                      "licence)"),
    "SpriteSheets": ("CC-BY-SA 3.0 / GPL 3.0 (a work derived from the art it learnt from)",
                     "art by the artists of the Liberated Pixel Cup (lpc.opengameart.org), as "
                     "collected in github.com/jrconway3/Universal-LPC-spritesheet, selection of "
                     "github.com/YingzhenLi/Sprites"),
    "FlareHeroes": ("CC-BY-SA 3.0 (a work derived from the art it learnt from)",
                    "avatar art by the artists of the Flare project (flarerpg.org, "
                    "github.com/flareteam/flare-game)"),
}
CHECK_TRIPLETS = 64  # the sample a test reproduces a shipped judge's ceilings on


def ship_judge(source, steps: int, batch_size: int, num_triplets: int, triplet_seed: int,
               out_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
               progress: bool = True, seed: int = 0) -> tuple[Path, dict]:
    """Write the judge of a built-in source (from ``out_dir`` if it is there, else the cache, else
    trained) into ``out_dir`` as a shipped file: its ceilings on the ``num_triplets`` held-out
    triplets ``rodi evaluate`` draws with ``triplet_seed``, and on :data:`CHECK_TRIPLETS` of them
    for the test, the recipe, the licence and the credit (``rodi judge``). ``seed`` is the judge's
    (``evaluation.judge_seed``), part of its recipe and so of its fingerprint.

    Returns:
        The file, and its ceilings.

    Raises:
        ValueError: ``source`` is not a built-in source with exact renders.
    """
    name = type(source).__name__
    if name not in LICENCES or not supports_judges(source):
        raise ValueError(f"only the built-in rendered sources ship judges, not {name}")
    judge = load_or_train_judge(source, steps, batch_size, seed, cache_dir=cache_dir,
                                progress=progress, shipped_dir=out_dir)
    ceilings = judge_ceilings(judge, source, num_triplets, triplet_seed)
    check = judge_ceilings(judge, source, CHECK_TRIPLETS, triplet_seed)
    path = shipped_judge_path(source, steps, batch_size, judge.seed, out_dir, judge.fingerprint)
    return write_judge_file(judge, source, path, ceilings, check, *LICENCES[name]), ceilings


def load_or_train_judge(source, steps: int, batch_size: int, seed: int = 0,
                        cache_dir: str | os.PathLike | None = None, progress: bool = True,
                        shipped_dir: str | os.PathLike | None = None) -> Judge:
    """The judge of ``source``: the shipped one whose fingerprint matches, else the user cache's,
    else trained with :func:`train_judge` and cached.

    The fingerprint hashes a fixed sample of the source's renders, labels and keypoints and the
    training recipe, so changed data or settings never reuse a judge made for other renders. The
    cache holds a plain ``.npz`` of arrays (no pickles); a cache that cannot be written only gives
    a warning.

    Args:
        shipped_dir: the folder of shipped judges (default: the package's ``assets/judges``).

    Raises:
        JudgeFileError: a shipped file of the right name is unreadable or does not fit.
    """
    fingerprint = _fingerprint(source, steps, batch_size, seed)
    shipped = shipped_judge_path(source, steps, batch_size, seed, shipped_dir, fingerprint)
    if shipped.is_file():
        judge, meta = read_judge_file(shipped, source)
        if meta.get("fingerprint") != fingerprint:
            raise JudgeFileError(f"{shipped}: made for renders with fingerprint "
                                 f"{meta.get('fingerprint')!r}, not {fingerprint!r}; rename or "
                                 "remove it")
        return judge
    path = Path(cache_dir) if cache_dir is not None else user_cache("judges")
    path = path / _file_name(source, fingerprint, ".npz")
    template = _new_net(source)
    origin = "cache" if path.is_file() else "trained"
    others = sorted(shipped.parent.glob(_file_name(source, "*", ".safetensors")))
    if origin == "trained" and others:
        warnings.warn(f"the shipped judge of {type(source).__name__} ({others[0].name}) was made "
                      f"for other renders or another recipe than these (fingerprint "
                      f"{fingerprint}); training one for them ({steps} steps, once, then cached)",
                      stacklevel=2)

    def build() -> dict[str, np.ndarray]:
        nonlocal origin
        origin = "trained"
        judge = train_judge(source, steps, batch_size, seed, progress=progress)
        return {k: v.numpy() for k, v in judge.net.state_dict().items()}

    arrays = cached_arrays(path, build, "the trained judge")
    template.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})
    return Judge(template, source, steps, batch_size, seed, JUDGE_LR, origin, fingerprint)


def keypoint_scores(predicted: torch.Tensor, truth: torch.Tensor,
                    image_size: int) -> dict[str, torch.Tensor]:
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


def target_equivalents(source, indices: torch.Tensor) -> dict[str, torch.Tensor]:
    """``target_equivalent_<label>`` masks (see ``LabelledCharacters.label_equivalents``) of the
    targets (character A in pose p) of (n, 4) triplet ``indices``, for :func:`judge_transfers`;
    empty where the source has none."""
    if not isinstance(source, LabelledSource):
        return {}
    a, _, p, _ = indices.unbind(1)
    return {f"target_{k}": v for k, v in source.label_equivalents(a, p).items()}


def judge_transfers(judge: Judge, batch: dict, transfers: torch.Tensor,
                    trivial: dict[str, torch.Tensor] | None = None,
                    reconstructions: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-triplet scores of transfers, beside the exact targets' (the ceiling) and those of
    outputs that know nothing they should (the floors).

    Args:
        judge: the source's judge.
        batch: a triplet batch from ``triplets()``: ``appearance_image`` (A in q), ``pose_image``
            (B in p), ``target`` (A in p), their labels and, where the source has them,
            ``target_keypoints`` (B, K, 2) in pixels.
        transfers: (B, 3, S, S) in [-1, 1], D(pi(pose input), alpha(appearance input)).
        trivial: constant (3, S, S) images from :func:`trivial_outputs`, scored as further floors.
        reconstructions: (B, 3, S, S) in [-1, 1], D(pi(appearance input), alpha(appearance
            input)), or None. Their appearance is scored as ``self_reconstruction``: how much of
            the appearance the model renders at all when nothing has to be disentangled, an upper
            reference for the transfers' retention that tells a rendering limit from a leak.

    Returns:
        (B,) float tensors named ``<group>/<metric>/<scored>``, ``scored`` being ``transfer``,
        ``ceiling`` (the target judged) or a floor: ``floor_input`` (for pose: the appearance
        input, which has the wrong pose; for appearance: the pose input, which has the wrong
        appearance), ``floor_mean_image`` and ``floor_average_body`` (the constant images).
        :func:`summarize_judged` takes the best floor per metric.
        ``pose/pck@0.05``, ``pose/pck@0.1`` (fractions of keypoints within that fraction of the
        image side) and ``pose/pixel_error`` (pixels) compare with the target's keypoints, which
        are the pose input's joints on the appearance's body (mocap's body scale is appearance);
        ``pose/<label>`` and ``appearance/<attribute>`` are 1 where the prediction equals the pose
        input's label or the appearance input's attribute, else 0. Where ``batch`` holds
        ``target_equivalent_<label>`` masks (:func:`target_equivalents`), a pose label is right when
        it names any pose that renders exactly like the target (modulo identical renders).
    """
    n = len(transfers)
    judged = {"transfer": (judge.predict(transfers),) * 2,
              "ceiling": (judge.predict(batch["target"]),) * 2,
              "floor_input": (judge.predict(batch["appearance_image"]),
                              judge.predict(batch["pose_image"]))}
    for name, image in (trivial or {}).items():
        constant = {k: v.expand(n, *v.shape[1:]) for k, v in judge.predict(image[None]).items()}
        judged[f"floor_{name}"] = (constant, constant)
    if reconstructions is not None:  # the appearance input's own pose: no pose to score
        judged["self_reconstruction"] = (None, judge.predict(reconstructions))
    size = transfers.shape[-1]
    out = {}
    for scored, (pose, look) in judged.items():
        if pose is None:
            pass
        elif judge.has_keypoints:
            for name, v in keypoint_scores(pose["keypoints"], batch["target_keypoints"],
                                           size).items():
                out[f"pose/{name}/{scored}"] = v
        for name in judge.pose_labels if pose is not None else ():
            right = pose[name] == batch[f"pose_{name}"]
            equivalent = batch.get(f"target_equivalent_{name}")
            # modulo identical renders: any value rendering like the target
            if equivalent is not None:
                right = equivalent.gather(
                    1, pose[name].clamp(0, equivalent.shape[1] - 1)[:, None]).squeeze(1)
            out[f"pose/{name}/{scored}"] = right.float()
        for name in judge.appearance_labels:
            out[f"appearance/{name}/{scored}"] = (look[name] == batch[f"appearance_{name}"]).float()
    return out


def normalised(score: float, floor: float, ceiling: float) -> float | None:
    """(score - floor) / (ceiling - floor): 0 at the floor, 1 at the ceiling, never clipped (below 0
    is worse than a trivial output); works for lower-is-better metrics too. None where the ceiling
    equals the floor."""
    span = ceiling - floor
    return (score - floor) / span if span != 0 else None


def summarize_judged(errors: dict[str, torch.Tensor]) -> dict:
    """Means of the judged per-triplet scores (keys ``<group>/<metric>/<scored>``), each metric's
    floor, and normalised scores (humanoid issue's yardstick; docs/method.md section 8).

    The floor of a metric is the best of the trivial outputs' means (``floor_input``,
    ``floor_mean_image``, ``floor_average_body``; the lowest where lower is better, that is for
    ``pixel_error``: see :mod:`rodi.evaluation.metrics`): a transfer must beat every output that
    knows nothing it should.

    Returns:
        ``pose_accuracy``: per metric (``pck@0.05``, ``pck@0.1`` in [0, 1], ``pixel_error`` in
        pixels, then one accuracy per pose label) a dict of ``transfer``, ``ceiling``, ``floor``,
        the three ``floor_*`` candidates and ``normalised``;
        ``appearance_retention``: the same per appearance attribute, and ``mean`` over attributes
        (its ``normalised`` is the mean of the per-attribute normalised scores);
        ``normalised``: ``pose`` (PCK@0.1 where there are keypoints, else the mean over pose
        labels), ``pose_labels`` (mean over pose labels) and ``appearance`` (mean over attributes);
        where the errors hold ``self_reconstruction`` scores, also each attribute's
        ``normalised_self_reconstruction`` (on the same floor and ceiling) and their mean,
        ``appearance_self_reconstruction``.
    """
    out = {"pose_accuracy": {}, "appearance_retention": {}}
    for key, values in errors.items():
        if key.count("/") != 2:
            continue
        group, metric, scored = key.split("/")
        name = "pose_accuracy" if group == "pose" else "appearance_retention"
        out[name].setdefault(metric, {})[scored] = values.double().mean().item()
    for group in ("pose_accuracy", "appearance_retention"):
        for metric, v in out[group].items():
            floors = [x for k, x in v.items() if k.startswith("floor_")]
            if floors:
                v["floor"] = min(floors) if lower_is_better(f"{group}.{metric}") else max(floors)
            if "floor" in v and "ceiling" in v:
                v["normalised"] = normalised(v["transfer"], v["floor"], v["ceiling"])
                if "self_reconstruction" in v:
                    v["normalised_self_reconstruction"] = normalised(
                        v["self_reconstruction"], v["floor"], v["ceiling"])
    pose, look = out["pose_accuracy"], out["appearance_retention"]

    def mean_of(values):
        return sum(values) / len(values) if values and None not in values else None

    attributes = list(look.values())
    if attributes:
        keys = [k for k in attributes[0]
                if not k.startswith("normalised") and all(k in a for a in attributes)]
        look["mean"] = {s: sum(a[s] for a in attributes) / len(attributes) for s in keys}
        look["mean"]["normalised"] = mean_of([a.get("normalised") for a in attributes])
        if "self_reconstruction" in keys:
            look["mean"]["normalised_self_reconstruction"] = mean_of(
                [a.get("normalised_self_reconstruction") for a in attributes])
    labels = [v.get("normalised") for k, v in pose.items()
              if not k.startswith(("pck@", "pixel_error"))]
    out["normalised"] = {
        "pose": pose["pck@0.1"].get("normalised") if "pck@0.1" in pose else mean_of(labels),
        "pose_labels": mean_of(labels),
        "appearance": look.get("mean", {}).get("normalised"),
    }
    if "normalised_self_reconstruction" in look.get("mean", {}):
        out["normalised"]["appearance_self_reconstruction"] = \
            look["mean"]["normalised_self_reconstruction"]
    return out

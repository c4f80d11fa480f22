"""``flare``: heroes composed from the layered avatar art of the game Flare (CC-BY-SA 3.0).

Flare (flarerpg.org, data in the ``fantasycore`` mod of the ``flare-game`` package) draws its hero
as seven layers -- head, chest, legs, feet, hands, main hand and off hand -- each an item's own
sprite sheet with the same animations. A *character* is one choice per layer plus a gender (the
male and female sets are separate sheets drawn on the same skeleton):

========== ======================================================================================
gender     male, female
head       the bare head (short hair for men, long hair for women), or one of six helmets/hoods
chest      bare, or one of seven shirts, vests and cuirasses
legs       bare, or one of seven trousers, skirts and greaves
feet       bare, or one of seven sandals and boots
hands      bare, or one of seven gloves, sleeves and gauntlets
main_hand  nothing, or one of 18 melee and magic weapons
off_hand   nothing, or one of three shields, a slingshot or one of three bows
========== ======================================================================================

The male bald head is left out so that every attribute has the same choices for both genders.
Of the 2 * 7 * 8**4 * 19 * 8 = 8,716,288 characters, ``NUM_CHARACTERS`` distinct ones are drawn
with a fixed seed and split 80/20 by character.

A *pose* is a direction (the engine's 8, index 0-7 as in the data files: 0 faces west, the index
turning clockwise on screen through north-west, north, ..., to south-west) times one frame of
one of the hero's eight animations: stance 4, run 8, swing 4, cast 4, shoot 4, block 2, hit 2,
die 6, so 8 * 34 = 272 poses. A layer draws nothing where its item has no frame for the pose, as
the engine does: melee weapons have no ``shoot`` animation and vanish in those poses, and a few
frames hidden behind the body are left out of the weapons' sheets.

Each frame rectangle is placed at its own render offset about the hero's foot point and the
layers are alpha-composited onto black in the per-direction order of the mod's
``engine/hero_layers.txt`` (for example ``main`` is drawn first, behind the body, when the hero
faces west, and last when facing east). The image is the same square box for every character and
pose: the union of every hero frame's visible pixels, centred, with one output pixel of margin,
so the crop says nothing about the pose. Every layer frame is area-resampled into that box at the
output resolution once (premultiplied alpha) and cached. Compositing the resampled layers equals
resampling the full-size composite except at output pixels where edges of two layers meet, where
the lower layer can show through by up to a quarter of its value (at S = 64 about 2% of pixels
differ by more than 0.05 in [-1, 1], the mean difference is 0.003).

Held-out identities: the humanoid enemies in ``ENEMIES`` have exactly the hero's animations and
frame counts, so :meth:`FlareHeroes.enemy_images` renders them in the same 272 poses and the same
box (they fit in it), for a qualitative appearance-transfer test. Goblins (3-frame swing), the
skeleton mage (no ``shoot``) and the non-humanoids are left out.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from rodi.cache import user_cache
from rodi.data.errors import DataError
from rodi.data.rendered import LabelledCharacters, cached_arrays

GENDERS = ("male", "female")
BARE_HEAD = {"male": "head_short", "female": "head_long"}
# Choices per layer, as names of the files in animations/avatar/<gender>/ ("" draws nothing;
# "head" stands for the gender's bare head). Slots follow the items' item_type in items/base/.
LAYER_CHOICES = {
    "head": ("head", "leather_hood", "chain_coif", "plate_helm", "mage_hood", "mage_hood_alt1",
             "mage_hood_alt2"),
    "chest": ("default_chest", "cloth_shirt", "leather_chest", "chain_cuirass", "plate_cuirass",
              "mage_vest", "mage_vest_alt1", "mage_vest_alt2"),
    "legs": ("default_legs", "cloth_pants", "leather_pants", "chain_greaves", "plate_greaves",
             "mage_skirt", "mage_skirt_alt1", "mage_skirt_alt2"),
    "feet": ("default_feet", "cloth_sandals", "leather_boots", "chain_boots", "plate_boots",
             "mage_boots", "mage_boots_alt1", "mage_boots_alt2"),
    "hands": ("default_hands", "cloth_gloves", "leather_gloves", "chain_gloves", "plate_gauntlets",
              "mage_sleeves", "mage_sleeves_alt1", "mage_sleeves_alt2"),
    "main_hand": ("", "dagger", "shortsword", "longsword", "greatsword", "zweihander", "club",
                  "reinforced_club", "mace", "war_hammer", "smith_hammer", "maul", "hand_axe",
                  "infantry_axe", "battle_axe", "wand", "rod", "staff", "greatstaff"),
    "off_hand": ("", "buckler", "iron_buckler", "shield", "slingshot", "shortbow", "longbow",
                 "greatbow"),
}
LAYERS = tuple(LAYER_CHOICES)
APPEARANCE_ATTRIBUTES = ("gender",) + LAYERS
# hero_layers.txt names the layers by equipment slot.
SLOT_LAYER = {"head": "head", "chest": "chest", "legs": "legs", "feet": "feet", "hands": "hands",
              "main": "main_hand", "off": "off_hand"}
ACTIONS = ("stance", "run", "swing", "cast", "shoot", "block", "hit", "die")
POSE_ATTRIBUTES = ("action", "direction", "frame")
DIRECTIONS = 8
ENEMIES = ("skeleton", "skeleton_weak", "skeleton_archer", "zombie")
NUM_CHARACTERS = 4000
SPLIT_SEED = 20120601
LAYER_ORDER_FILE = "engine/hero_layers.txt"
MOD_PATH = "usr/share/games/flare/mods/fantasycore"  # inside the flare-game package
COPYRIGHT_PATH = "usr/share/doc/flare-game/copyright"
ENV_ROOT = "RODI_FLARE_ROOT"
COMMAND_TIMEOUT = 600  # seconds, for apt-get download and dpkg-deb -x of a 120 MB package
CACHE_VERSION = 1

HOW_TO_GET = (
    "Get the data one of three ways: (1) `apt-get download flare-game` and `dpkg-deb -x "
    "flare-game_*.deb DIR`, then data.root=DIR; (2) a checkout of the game's public repository "
    "(git clone https://github.com/flareteam/flare-game), then data.root=CHECKOUT; (3) set "
    f"${ENV_ROOT} to either folder (or to its mods/fantasycore folder)."
)


class FlareDataError(DataError, RuntimeError):
    """The Flare game data is missing or unreadable, or could not be downloaded."""


@dataclass(frozen=True)
class Animations:
    """One animation file: ``image`` (sheet path relative to the mod folder), ``counts`` (frames
    per action) and ``frames`` ((action, frame, direction) -> (x, y, w, h, offset_x, offset_y))."""

    image: str
    counts: dict
    frames: dict


def parse_animations(path: Path) -> Animations:
    """Read a Flare animation definition (``image=``, ``[action]`` sections with ``frames=`` and
    ``frame=index,direction,x,y,w,h,offset_x,offset_y`` lines).

    Raises:
        FlareDataError: the file is missing or malformed.
    """
    image, action, counts, frames = None, None, {}, {}
    try:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            key, _, value = line.strip().partition("=")
            if key.startswith("[") and key.endswith("]"):
                action = key[1:-1]
            elif key == "image":
                image = value
            elif key == "frames" and action is not None:
                counts[action] = int(value)
            elif key == "frame" and action is not None:
                index, direction, *rect = (int(v) for v in value.split(","))
                if len(rect) != 6:
                    raise ValueError(f"line {number}: expected 8 numbers in {line!r}")
                frames[(action, index, direction)] = tuple(rect)
    except (OSError, ValueError) as err:
        raise FlareDataError(f"{path}: cannot read the animation definition ({err})") from None
    if image is None:
        raise FlareDataError(f"{path}: no image= line")
    return Animations(image, counts, frames)


def hero_files(gender: str) -> list[str]:
    """Animation files of every layer choice of ``gender``, relative to the mod folder."""
    names = {BARE_HEAD[gender] if c == "head" else c
             for choices in LAYER_CHOICES.values() for c in choices}
    return [f"animations/avatar/{gender}/{name}.txt" for name in sorted(names - {""})]


def _animation_files() -> list[str]:
    return ([f for g in GENDERS for f in hero_files(g)]
            + [f"animations/enemies/{e}.txt" for e in ENEMIES])


def _image_line(path: Path) -> str | None:
    for line in path.read_text().splitlines():
        if line.startswith("image="):
            return line[len("image="):].strip()
    return None


def needed_files(mod: Path) -> list[str]:
    """Every file this source reads, relative to the mod folder ``mod``; the images are only listed
    for animation files that exist."""
    files = [LAYER_ORDER_FILE] + _animation_files()
    images = {_image_line(mod / f) for f in _animation_files() if (mod / f).is_file()}
    return files + sorted(i for i in images if i)


def _missing(mod: Path) -> list[str]:
    return [f for f in needed_files(mod) if not (mod / f).is_file()]


def locate_flare(root: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                 download: bool = True) -> Path:
    """The ``fantasycore`` mod folder holding the avatar data: ``root`` (an extracted package, a
    flare-game checkout, or the mod folder itself), else ``$RODI_FLARE_ROOT``, else the cache
    (``cache_dir``, default the user cache's ``flare`` folder, see :func:`rodi.cache.user_cache`:
    the extracted data goes to its ``fantasycore`` folder, the resampled layers beside it), else
    -- with ``download`` -- the ``flare-game`` package fetched with ``apt-get download`` and
    unpacked with ``dpkg-deb -x``, of which only the needed files and the licence are moved into
    the cache.

    Raises:
        FlareDataError: no usable data was found or fetched; the message lists where rodi looked
            and the ways to obtain the data.
    """
    if root is not None:
        base = Path(root).expanduser()
        candidates = [base, base / "mods" / "fantasycore", base / MOD_PATH]
        for mod in candidates:
            if mod.is_dir() and not _missing(mod):
                return mod
        found = next((m for m in candidates if m.is_dir() and (m / "animations").is_dir()), None)
        detail = (f"{found} lacks {', '.join(_missing(found)[:3])}" if found is not None
                  else f"no fantasycore mod folder in {base}")
        raise FlareDataError(f"{base} does not hold the Flare avatar data ({detail}). {HOW_TO_GET}")
    env = os.environ.get(ENV_ROOT)
    if env:
        return locate_flare(env, download=False)
    looked = [f"${ENV_ROOT} (not set)"]
    cache = Path(cache_dir).expanduser() if cache_dir is not None else user_cache("flare")
    mod = cache / "fantasycore"
    if mod.is_dir() and not _missing(mod):
        return mod
    looked.append(f"the cache {mod}")
    if download:
        try:
            return _download(cache)
        except (OSError, subprocess.SubprocessError, FlareDataError) as err:
            looked.append(f"apt-get download flare-game ({type(err).__name__}: {err})")
    raise FlareDataError("could not find the Flare game data; looked at " + "; ".join(looked)
                         + ". " + HOW_TO_GET)


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                            timeout=COMMAND_TIMEOUT)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise FlareDataError(f"`{' '.join(command)}` failed: "
                             f"{message[-1] if message else result.returncode}")


def _download(cache: Path) -> Path:
    """Fetch and unpack flare-game in a temporary folder, copy the needed files into a staging
    folder beside the cache's ``fantasycore`` and rename it into place, so that a failure at any
    point leaves no partial folder."""
    target = cache / "fantasycore"
    with tempfile.TemporaryDirectory(prefix="rodi-flare-") as tmp:
        tmp = Path(tmp)
        _run(["apt-get", "download", "flare-game"], tmp)
        debs = sorted(tmp.glob("flare-game_*.deb"))
        if not debs:
            raise FlareDataError("apt-get download flare-game produced no .deb file")
        _run(["dpkg-deb", "-x", str(debs[-1]), str(tmp / "package")], tmp)
        source = tmp / "package" / MOD_PATH
        missing = _missing(source)
        if missing:
            raise FlareDataError(f"the flare-game package lacks {', '.join(missing[:3])}")
        cache.mkdir(parents=True, exist_ok=True)
        staging = cache / f".fantasycore-{os.getpid()}-{secrets.token_hex(4)}"
        stale = cache / f".stale-{staging.name}"
        try:
            staging.mkdir()
            for name in needed_files(source):
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / name, staging / name)
            shutil.copy2(tmp / "package" / COPYRIGHT_PATH, staging / "copyright")
            if target.is_dir():  # incomplete, or rodi would have used it
                os.replace(target, stale)
            try:
                os.replace(staging, target)
            except OSError:
                if _missing(target):  # not another process that got there first
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(stale, ignore_errors=True)
    return target


def read_layer_order(mod: Path) -> np.ndarray:
    """(8, 7) long: per direction, indices into ``LAYERS`` in drawing order (first drawn first,
    i.e. furthest back), from the mod's ``engine/hero_layers.txt``.

    Raises:
        FlareDataError: the file is missing, malformed, or does not order all seven layers for
            every direction.
    """
    path = mod / LAYER_ORDER_FILE
    order = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.strip().partition("=")
            if key == "layer":
                direction, *slots = (v.strip() for v in value.split(","))
                order[int(direction)] = [LAYERS.index(SLOT_LAYER[s]) for s in slots]
    except (OSError, ValueError, KeyError) as err:
        raise FlareDataError(f"{path}: cannot read the hero layer order ({err})") from None
    if (sorted(order) != list(range(DIRECTIONS))
            or any(sorted(v) != list(range(len(LAYERS))) for v in order.values())):
        raise FlareDataError(f"{path}: expected an order of all {len(LAYERS)} layers for each of "
                             f"{DIRECTIONS} directions, got {order}")
    return np.array([order[d] for d in range(DIRECTIONS)], dtype=np.int64)


def pose_table(mod: Path) -> np.ndarray:
    """(P, 3) long (action, direction, frame) of every pose, direction-major, then ``ACTIONS``
    order, then frame; frame counts come from the bare chest of both genders.

    Raises:
        FlareDataError: an action is missing or the genders' frame counts differ.
    """
    counts = [parse_animations(mod / f"animations/avatar/{g}/default_chest.txt").counts
              for g in GENDERS]
    for g, c in zip(GENDERS, counts):
        if any(c.get(a, 0) < 1 for a in ACTIONS) or c != counts[0]:
            raise FlareDataError(f"{g} default_chest: expected the same frames of "
                                 f"{', '.join(ACTIONS)} for both genders, got {c}")
    return np.array([(a, d, f) for d in range(DIRECTIONS) for a, action in enumerate(ACTIONS)
                     for f in range(counts[0][action])], dtype=np.int64)


@dataclass(frozen=True)
class LayerFrames:
    """Every layer frame area-resampled into the image box, as tiles of a flat pixel store.

    ``pixels`` (N + 1, 4) uint8 premultiplied RGBA, the last row transparent; ``frames`` (F, 5)
    long (offset into ``pixels``, height, width, top, left) of each tile in the S x S image, frame
    0 empty; ``hero`` (2, len(LAYERS), 19, P) int32 frame of each gender, layer, choice and pose;
    ``enemy`` (len(ENEMIES), P) int32; ``box`` (3,) float64 left, top, side in source pixels
    relative to the hero's foot point.
    """

    pixels: np.ndarray
    frames: np.ndarray
    hero: np.ndarray
    enemy: np.ndarray
    box: np.ndarray


def _load_sheet(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGBA"))
    except (OSError, SyntaxError) as err:
        raise FlareDataError(f"{path}: cannot read the sprite sheet ({err})") from None


def _cuts(anim: Animations, sheet: np.ndarray, poses: np.ndarray):
    """(pose index, RGBA cut (h, w, 4) uint8 trimmed to its visible pixels, left, top relative to
    the foot point) for each pose the animation has a non-empty frame for."""
    for k, (a, d, f) in enumerate(poses.tolist()):
        rect = anim.frames.get((ACTIONS[a], f, d))
        if rect is None:
            continue
        x, y, w, h, ox, oy = rect
        cut = sheet[y:y + h, x:x + w]
        rows, cols = np.nonzero(cut[..., 3].any(1))[0], np.nonzero(cut[..., 3].any(0))[0]
        if len(rows) == 0:
            continue
        cut = cut[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        yield k, cut, cols[0] - ox, rows[0] - oy


def _area_weights(start: int, count: int, origin: float, step: float,
                  size: int) -> tuple[int, np.ndarray]:
    """Box-filter weights from ``count`` source pixels starting at ``start`` onto output pixels of
    width ``step`` from ``origin``: (first output pixel, (n, count) weights), only the output
    pixels inside [0, size) that the source overlaps."""
    first = max(0, int(np.floor((start - origin) / step)))
    last = min(size, int(np.ceil((start + count - origin) / step)))
    lo = origin + step * np.arange(first, last, dtype=np.float64)[:, None]
    src = start + np.arange(count, dtype=np.float64)[None, :]
    overlap = np.minimum(lo + step, src + 1) - np.maximum(lo, src)
    return first, np.clip(overlap, 0, None) / step


def build_layer_frames(mod: Path, image_size: int, poses: np.ndarray,
                       progress: bool = True) -> LayerFrames:
    """Cut every hero and enemy frame from its sheet, choose the box from the hero frames' visible
    pixels, and area-resample each frame (premultiplied) into the S x S image of that box.

    Raises:
        FlareDataError: a file is missing or unreadable.
    """
    files = _animation_files()
    anims = {f: parse_animations(mod / f) for f in files}
    sheets = {}
    hero_cuts, enemy_cuts = {}, {}
    for f in tqdm(files, desc="cutting flare frames", disable=not progress, unit="file",
                  dynamic_ncols=True):
        image = anims[f].image
        if image not in sheets:
            sheets[image] = _load_sheet(mod / image)
        cuts = list(_cuts(anims[f], sheets[image], poses))
        (enemy_cuts if f.startswith("animations/enemies/") else hero_cuts)[f] = cuts
    sheets.clear()
    left = min(x for cuts in hero_cuts.values() for _, _, x, _ in cuts)
    top = min(y for cuts in hero_cuts.values() for _, _, _, y in cuts)
    right = max(x + c.shape[1] for cuts in hero_cuts.values() for _, c, x, _ in cuts)
    bottom = max(y + c.shape[0] for cuts in hero_cuts.values() for _, c, _, y in cuts)
    step = max(right - left, bottom - top) / (image_size - 2)  # one empty output pixel each side
    side = step * image_size
    box = np.array([(left + right - side) / 2, (top + bottom - side) / 2, side])

    tiles, frames = [], [(0, 0, 0, 0, 0)]
    offset = 0
    frame_of = {}
    for f, cuts in {**hero_cuts, **enemy_cuts}.items():
        ids = np.zeros(len(poses), dtype=np.int32)
        for k, cut, x, y in cuts:
            rgba = cut.astype(np.float64) / 255.0
            rgba[..., :3] *= rgba[..., 3:]
            top_row, wy = _area_weights(y, cut.shape[0], box[1], step, image_size)
            left_col, wx = _area_weights(x, cut.shape[1], box[0], step, image_size)
            tile = np.tensordot(np.tensordot(wy, rgba, axes=(1, 0)), wx,
                                axes=(1, 1)).transpose(0, 2, 1)
            tile = np.rint(tile * 255.0).clip(0, 255).astype(np.uint8)
            rows, cols = np.nonzero(tile.any((1, 2)))[0], np.nonzero(tile.any((0, 2)))[0]
            if len(rows) == 0:
                continue
            tile = tile[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            ids[k] = len(frames)
            frames.append((offset, tile.shape[0], tile.shape[1], top_row + rows[0],
                           left_col + cols[0]))
            tiles.append(tile.reshape(-1, 4))
            offset += len(tiles[-1])
        frame_of[f] = ids
    pixels = np.concatenate(tiles + [np.zeros((1, 4), np.uint8)])
    n_choices = max(len(c) for c in LAYER_CHOICES.values())
    hero = np.zeros((len(GENDERS), len(LAYERS), n_choices, len(poses)), dtype=np.int32)
    for g, gender in enumerate(GENDERS):
        for layer, choices in enumerate(LAYER_CHOICES.values()):
            for c, name in enumerate(choices):
                name = BARE_HEAD[gender] if name == "head" else name
                if name:
                    hero[g, layer, c] = frame_of[f"animations/avatar/{gender}/{name}.txt"]
    enemy = np.stack([frame_of[f"animations/enemies/{e}.txt"] for e in ENEMIES])
    return LayerFrames(pixels, np.array(frames, dtype=np.int64), hero, enemy, box)


def _cache_key(mod: Path, image_size: int) -> str:
    spec = json.dumps([CACHE_VERSION, image_size, LAYER_CHOICES, BARE_HEAD, ACTIONS,
                       ENEMIES]).encode()
    digest = hashlib.sha256(spec)
    for name in needed_files(mod):
        digest.update(name.encode() + b"\0" + (mod / name).read_bytes())
    return digest.hexdigest()[:16]


def cached_layer_frames(mod: Path, image_size: int, poses: np.ndarray,
                        cache_dir: str | os.PathLike | None = None,
                        progress: bool = True) -> LayerFrames:
    """:func:`build_layer_frames`, built once and then read from ``cache_dir`` (default: the user
    cache's ``flare`` folder, see :func:`rodi.cache.user_cache`). The file is named by a hash of
    the settings and every input file and written atomically; an unreadable one is built again."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else user_cache("flare")
    path = cache / f"layers-{image_size}-{_cache_key(mod, image_size)}.npz"
    arrays = cached_arrays(path, lambda: vars(build_layer_frames(mod, image_size, poses, progress)),
                           "the Flare layer frames")
    return LayerFrames(arrays["pixels"], arrays["frames"], arrays["hero"], arrays["enemy"],
                       arrays["box"])


def character_table(n: int = NUM_CHARACTERS, seed: int = SPLIT_SEED) -> np.ndarray:
    """(n, len(APPEARANCE_ATTRIBUTES)) int64 distinct characters drawn uniformly with ``seed``:
    gender, then one choice index per layer of ``LAYER_CHOICES``."""
    sizes = [len(GENDERS)] + [len(c) for c in LAYER_CHOICES.values()]
    rs = np.random.RandomState(seed)
    codes = rs.randint(int(np.prod(sizes)), size=2 * n)
    _, first = np.unique(codes, return_index=True)
    codes = codes[np.sort(first)[:n]]
    if len(codes) < n:
        raise ValueError(f"cannot draw {n} distinct characters")
    return np.stack(np.unravel_index(codes, sizes), axis=1).astype(np.int64)


class FlareHeroes(LabelledCharacters):
    """Flare heroes composed from their layers; the interface of
    :class:`rodi.data.mocap.MocapHumanoid` without keypoints.

    Args:
        image_size: side S of the square images in pixels.
        root: the data folder, or None to search (see :func:`locate_flare`).
        cache_dir: where downloaded data and resampled layers are kept (default: the user cache's
            ``flare`` folder).
        progress: show a progress bar while building the layer cache.

    Attributes:
        characters: (N, 8) long choices of ``appearance_attributes`` per character.
        pose_labels: (P, 3) long action, direction, frame of each pose.
        layer_order: (8, 7) long indices into ``LAYERS`` in drawing order per direction.

    Raises:
        FlareDataError: the data cannot be found, fetched or read.
    """

    appearance_attributes = APPEARANCE_ATTRIBUTES
    pose_attributes = POSE_ATTRIBUTES

    def __init__(self, image_size: int = 64, root: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True):
        if image_size < 8:
            raise FlareDataError(f"image_size must be at least 8 pixels, got {image_size}")
        self.image_size = image_size
        self.root = locate_flare(root, cache_dir)
        poses = pose_table(self.root)
        self.layer_order = torch.from_numpy(read_layer_order(self.root))
        frames = cached_layer_frames(self.root, image_size, poses, cache_dir, progress)
        self._pixels = torch.from_numpy(np.ascontiguousarray(frames.pixels))
        self._frames = torch.from_numpy(np.ascontiguousarray(frames.frames))
        self._hero = torch.from_numpy(np.ascontiguousarray(frames.hero)).long()
        self._enemy = torch.from_numpy(np.ascontiguousarray(frames.enemy)).long()
        self.box = tuple(frames.box.tolist())
        self.pose_labels = torch.from_numpy(poses)
        self.characters = torch.from_numpy(character_table())
        order = np.random.RandomState(SPLIT_SEED + 1).permutation(len(self.characters))
        n_test = len(order) // 5
        self._splits = {"train": torch.from_numpy(np.sort(order[n_test:])),
                        "test": torch.from_numpy(np.sort(order[:n_test]))}

    @property
    def num_poses(self) -> int:
        return len(self.pose_labels)

    def _published_split(self, name: str) -> torch.Tensor:
        """Character indices of the published split ``train`` or ``test`` (see :meth:`split`)."""
        return self._splits[name]

    def _layer_frames(self, character: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """(B, len(LAYERS)) long frame ids of each character's layers in ``LAYERS`` order."""
        choices = self.characters[character]
        layers = torch.arange(len(LAYERS))
        return self._hero[choices[:, :1], layers, choices[:, 1:], pose.unsqueeze(1)]

    def _tiles(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Premultiplied RGBA (B, n, 4) float32 in [0, 1] of frames ``frame`` (B,) and their flat
        pixel positions (B, n) in the S x S image, S * S where a tile is padded to the batch's
        largest."""
        offset, height, width, top, left = self._frames[frame].unbind(1)
        ty = torch.arange(int(height.max())).view(1, -1, 1)
        tx = torch.arange(int(width.max())).view(1, 1, -1)
        height, width = height.view(-1, 1, 1), width.view(-1, 1, 1)
        inside = (ty < height) & (tx < width)
        src = torch.where(inside, offset.view(-1, 1, 1) + ty * width + tx, len(self._pixels) - 1)
        s = self.image_size
        dst = torch.where(inside, (top.view(-1, 1, 1) + ty) * s + left.view(-1, 1, 1) + tx, s * s)
        return self._pixels[src.flatten(1)].float().div_(255.0), dst.flatten(1)

    def _composite(self, frames: torch.Tensor) -> torch.Tensor:
        """Composite frame ids (B, K), first drawn first, over black: (B, 3, S, S) in [-1, 1]."""
        n, s = len(frames), self.image_size
        canvas = torch.zeros(n, s * s + 1, 3)  # the extra pixel takes the tiles' padding
        for k in range(frames.shape[1]):
            if not frames[:, k].any():
                continue
            rgba, dst = self._tiles(frames[:, k])
            dst = dst.unsqueeze(2).expand(-1, -1, 3)
            under = canvas.gather(1, dst)
            canvas.scatter_(1, dst, under.mul_(1.0 - rgba[..., 3:]).add_(rgba[..., :3]))
        img = canvas[:, : s * s].clamp_(0.0, 1.0).view(n, s, s, 3).permute(0, 3, 1, 2)
        return img.mul(2.0).sub_(1.0).contiguous()

    def render(self, character: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Characters ``character`` in poses ``pose``.

        Args:
            character: (B,) long character indices.
            pose: (B,) long pose indices.

        Returns:
            (B, 3, S, S) float32 in [-1, 1]: the layers composited over black in the engine's
            order for the pose's direction.
        """
        character, pose = character.long(), pose.long()
        order = self.layer_order[self.pose_labels[pose, 1]]
        return self._composite(self._layer_frames(character, pose).gather(1, order))

    def layer_alpha(self, character: torch.Tensor, pose: torch.Tensor, layer: str) -> torch.Tensor:
        """(B, S, S) float32 in [0, 1]: coverage of one layer (a name in ``LAYERS``) on its own,
        before the layers drawn over it."""
        frame = self._layer_frames(character.long(), pose.long())[:, LAYERS.index(layer)]
        s = self.image_size
        alpha = torch.zeros(len(frame), s * s + 1)
        if frame.any():
            rgba, dst = self._tiles(frame)
            alpha.scatter_(1, dst, rgba[..., 3])
        return alpha[:, : s * s].view(-1, s, s)

    def enemy_images(self, enemy: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Held-out identities: enemies ``enemy`` ((B,) long indices into ``ENEMIES``) in poses
        ``pose`` ((B,) long), (B, 3, S, S) float32 in [-1, 1] in the heroes' box."""
        return self._composite(self._enemy[enemy.long(), pose.long()].unsqueeze(1))


"""The Sprites benchmark, composed exactly from the LPC character layer sheets.

A character is one choice per layer (body, eyes, shoes, bottomwear, topwear, hair); a pose is one
64x64 cell of the sheet (an action seen from a direction, one frame). Images are rendered on the fly
by alpha-compositing the chosen layers' cells over an opaque black background, in the order given by
the sheets' SOURCE.md: body, eyes, shoes, bottomwear, topwear, hair.

Two protocols:

``sprites``
    The widely used protocol of Li & Mandt (ICML 2018): body, bottomwear, topwear and hair vary over
    choices 0-5 (6**4 = 1296 characters), shoes fixed to sheet 1, no eyes layer; actions walk,
    spellcast and slash seen from the left, front and right, 8 frames each (72 poses; the 8-frame
    sequences of the 7-frame spellcast and 6-frame slash rows repeat cells as the original frame
    extraction did). Split by character exactly as the published data set: character index
    ``s`` (body = s // 216, bottomwear = s // 36 % 6, topwear = s // 6 % 6, hair = s % 6) is
    permuted with ``numpy.random.RandomState(423)``; the first 1000 are the training set, the
    other 296 the test set.
``sprites-full``
    Every layer choice (7 * 5 * 3 * 7 * 7 * 10 = 51450 characters) and every non-empty cell
    (178 poses: 6 actions, 4 directions, hurt only from the front). Split by character with a
    ``RandomState(423)`` permutation, 20% held out.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch
import torch
from PIL import Image

from rodi.cache import user_cache
from rodi.config import PROTOCOLS
from rodi.data.errors import DataError
from rodi.data.rendered import LabelledCharacters

CELL = 64
SHEET_SIZE = (832, 1344)  # width, height: 13 columns x 21 rows of 64x64 cells
LAYER_ORDER = ("body", "eyes", "shoes", "bottomwear", "topwear", "hair")
LAYER_CHOICES = {"body": 7, "eyes": 5, "shoes": 3, "bottomwear": 7, "topwear": 7, "hair": 10}

# Sheet rows: (action, first row, frames per row, directions of its rows in order).
SHEET_ROWS = (
    ("spellcast", 0, 7, ("back", "left", "front", "right")),
    ("thrust", 4, 8, ("back", "left", "front", "right")),
    ("walk", 8, 9, ("back", "left", "front", "right")),
    ("slash", 12, 6, ("back", "left", "front", "right")),
    ("shoot", 16, 13, ("back", "left", "front", "right")),
    ("hurt", 20, 6, ("front",)),
)

# The 8-frame sequences of the widely used protocol, as sheet columns per frame.
SPRITES_FRAME_COLUMNS = {
    "walk": (8, 1, 2, 3, 4, 5, 6, 7),
    "spellcast": (0, 1, 2, 3, 4, 5, 4, 6),
    "slash": (0, 1, 2, 3, 4, 5, 4, 0),
}
SPRITES_ACTIONS = ("walk", "spellcast", "slash")
SPRITES_DIRECTIONS = ("left", "front", "right")
SPRITES_LAYERS = ("body", "bottomwear", "topwear", "hair")
SPRITES_SHOES = 1
SPLIT_SEED = 423

# sha256 of the sheets as published in github.com/YingzhenLi/Sprites.
SHEET_SHA256 = {
    "body/0.png": "27d1ac78db37c42f35a20d15c42705efc5e58d47c236cc01423879d4f797f151",
    "body/1.png": "1535e9228357b884df80f777a0d1dac10ac35e550e4d8d077105ccad014a1460",
    "body/2.png": "7c241033b4897501cb3721b6c3a9ebfa94b13db10a539edbd9bcc3e0c2a4bcb9",
    "body/3.png": "055f5aa33fc112d8444b42fce2cf50608a9fbbf2466c54ceaa46c777589a717a",
    "body/4.png": "57f3b9c510482379aba9a32fc0de7d48e9cbe3dc40f2447283547f773b77ca72",
    "body/5.png": "91e49453aeab5ebbb4fd2b48253812895dcfb4cb1829b84e24425c66de8f04ff",
    "body/6.png": "5b9678d177c0c33bcac9c47ef74460e9401b99cc4be7dffdccc0951e9eba3993",
    "eyes/0.png": "7a278e8fe89ea2af10f0bfeeb4eac39d1c785dc445a3cc8fbaa526f0b060a3b8",
    "eyes/1.png": "a5c3a7929257c5a58d33ef31edff546cd90f91d376436432491a9f7cda12ed22",
    "eyes/2.png": "1bf864e03c357ab6f7fdce9a8da77ea2ec1c0c4fb84fd01d3bfa6be493e520cb",
    "eyes/3.png": "7bb7d944c688022804e0a816533825b556c75ac3fc43b5ad05fa76d1a58a1669",
    "eyes/4.png": "be95a908108064a17436783cea6a11ffde5ffd50dd9b60521d8788f6bbc9b51d",
    "shoes/0.png": "f58fd946a82304ac49c9d824461ba343651106015bffdd2c71189131d28aadfc",
    "shoes/1.png": "d56a561616a20a12030d2d40a52eeec63e6d048871bf3b6994221869362151f1",
    "shoes/2.png": "faba8fc036f0494f144ff5dfd5185214f4138b4d39257da42186b0e60e5e2c5e",
    "bottomwear/0.png": "4ec356c488e272fde2d2d0d722b12a80217871e41161d43ba784caf243969ec2",
    "bottomwear/1.png": "0674312eaa4ab548f8bb31ef95d7dbd46b41555758cec51bd6c3e9fac9a0f936",
    "bottomwear/2.png": "3b464feb0d20ff34b0ca2a6d1fd00766ad86e2229c3d56ff91379fe27588a893",
    "bottomwear/3.png": "b366e84ea0519d06cf693f51e0ee2f9ac32b3132d27c75dfdc4b6f52fca072de",
    "bottomwear/4.png": "4ed7e7702e4f50b9692c0043be04b7296a108d85ea97230fb50d13c150d98771",
    "bottomwear/5.png": "a5c5e7e33f13fe5ad37b5836a5a74fb0d2094a0877c2146961b88688ff85840d",
    "bottomwear/6.png": "a50af1e08421c4fcc4b6365c75c81c8b328f0d4a7bf93b5a1cb97d45e3b72bde",
    "topwear/0.png": "b917edcf2b3c35d51ef57a6fad67557c5edf048785bea29db09a640d09ac9a90",
    "topwear/1.png": "e33c6cb31ed1268a2c0dc73b665b1c9b9420e22baf3321880222bdb22682368b",
    "topwear/2.png": "2b9b8fefa08894b7ea536cd62b86d494aefe6e54495c5c1d83460827b13b6448",
    "topwear/3.png": "807f5b628592f6747e2814be9435963069dba6c360577168c02f57bbe903433d",
    "topwear/4.png": "b51b17878503877e179ce4f9231713bf2b2d2d666c3ec9ee29f4e784469867a2",
    "topwear/5.png": "1b6049d43f83ebfda857cc405d1936ac9fd80be480fa6ad239024a6a75ad0372",
    "topwear/6.png": "b1da999190e2c41f2e5861d34adc551ad68016ecdcb125ab1371d8af8f7f36cb",
    "hair/0.png": "e4007b0635a239ad16cdebfe90759349ccc73dfc6836c9d19625714be185f43d",
    "hair/1.png": "fa6369f84d3310705df6d8ca8c9d515a7d211e73d2826c50a9cb5bb285652c66",
    "hair/2.png": "1b8046752be7233e829ebe9b11048e171d8d181ee6f68e07042b34f57bb8af0d",
    "hair/3.png": "333783285c5fd94ff434ae5000d2da39aac7940269f173119eaa70d34c8acfa1",
    "hair/4.png": "24df8e9b291cbd444f6c4d12d35b3d43d909cd13f04e6401e0fd8ab10216d5a2",
    "hair/5.png": "4dd471cc20e0b1cf71adcaab01c88598767e5cfe680adacdf560ca91574f17ae",
    "hair/6.png": "383c2297bf411091dfcb9e250c30912b97a13094fb2465987e961d475855d331",
    "hair/7.png": "c4460119998811c4a1bcb8ccbb22f5d9a8ee84abe30880677e70b7106341e67d",
    "hair/8.png": "ea2cd93e23bafd8962caf6f7e7e4c97e73f5742bd9527254abeb6ddfd510d34a",
    "hair/9.png": "94939929ec5fc142671090a1d83b9e6f89784f3022925fad2e1e19c5dced133d",
}
DOWNLOAD_BASE_URL = "https://raw.githubusercontent.com/YingzhenLi/Sprites/master/"
ENV_ROOT = "RODI_SPRITES_ROOT"


class SpritesDataError(DataError, RuntimeError):
    """The layer sheets are missing, unreadable or not the expected ones."""


@dataclass(frozen=True)
class Pose:
    """One cell of the sheet: ``action`` seen from ``direction``, ``frame`` of its sequence."""

    action: int
    direction: int
    frame: int
    row: int
    column: int


@dataclass(frozen=True)
class Protocol:
    """Which layers vary, which are fixed, which cells are poses, and the split by character.

    ``characters`` is (N, len(varied)) of layer choices; ``train``/``test`` index into it.
    """

    name: str
    varied: tuple[str, ...]
    fixed: dict
    actions: tuple[str, ...]
    directions: tuple[str, ...]
    poses: tuple[Pose, ...]
    characters: np.ndarray
    train: np.ndarray
    test: np.ndarray


def make_protocol(name: str) -> Protocol:
    """Build protocol ``name`` (``sprites`` or ``sprites-full``).

    Raises:
        ValueError: for an unknown protocol name.
    """
    if name == "sprites":
        poses = []
        for a, action in enumerate(SPRITES_ACTIONS):
            _, first_row, _, row_dirs = next(r for r in SHEET_ROWS if r[0] == action)
            for d, direction in enumerate(SPRITES_DIRECTIONS):
                row = first_row + row_dirs.index(direction)
                for f, col in enumerate(SPRITES_FRAME_COLUMNS[action]):
                    poses.append(Pose(a, d, f, row, col))
        s = np.arange(6**4)
        characters = np.stack([s // 216, s // 36 % 6, s // 6 % 6, s % 6], axis=1)
        order = np.random.RandomState(SPLIT_SEED).permutation(len(characters))
        return Protocol(
            name, SPRITES_LAYERS, {"shoes": SPRITES_SHOES}, SPRITES_ACTIONS, SPRITES_DIRECTIONS,
            tuple(poses), characters, np.sort(order[:1000]), np.sort(order[1000:]),
        )
    if name == "sprites-full":
        actions = tuple(r[0] for r in SHEET_ROWS)
        directions = ("back", "left", "front", "right")
        poses = []
        for a, (_, first_row, n_frames, row_dirs) in enumerate(SHEET_ROWS):
            for i, direction in enumerate(row_dirs):
                for f in range(n_frames):
                    poses.append(Pose(a, directions.index(direction), f, first_row + i, f))
        characters = np.array(
            list(itertools.product(*(range(LAYER_CHOICES[k]) for k in LAYER_ORDER))), dtype=np.int64
        )
        order = np.random.RandomState(SPLIT_SEED).permutation(len(characters))
        n_test = len(characters) // 5
        return Protocol(
            name, LAYER_ORDER, {}, actions, directions, tuple(poses), characters,
            np.sort(order[n_test:]), np.sort(order[:n_test]),
        )
    raise ValueError(f"unknown Sprites protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")


def _sheet_files() -> list[str]:
    return [f"{layer}/{i}.png" for layer in LAYER_ORDER for i in range(LAYER_CHOICES[layer])]


def _looks_like_root(path: Path) -> bool:
    return all((path / f).is_file() for f in _sheet_files())


def locate_sheets(root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Find the folder of layer sheets: ``root``, else ``$RODI_SPRITES_ROOT``, else the user cache
    (``user_cache("lpc-sprites")``, see :func:`rodi.cache.user_cache`), else download them into the
    user cache (checksums verified).

    Raises:
        SpritesDataError: the given folder lacks sheets, or nothing was found and the download
            failed; the message lists every place looked at and how to point rodi at local sheets.
    """
    if root is not None:
        path = Path(root).expanduser()
        if not _looks_like_root(path):
            missing = [f for f in _sheet_files() if not (path / f).is_file()]
            raise SpritesDataError(
                f"{path} is not a folder of LPC layer sheets: missing {len(missing)} of "
                f"{len(_sheet_files())} files, e.g. {', '.join(missing[:3])}"
            )
        return path
    looked = []
    env = os.environ.get(ENV_ROOT)
    if env:
        return locate_sheets(env, download=False)
    looked.append(f"${ENV_ROOT} (not set)")
    cache = user_cache("lpc-sprites")  # where downloaded sheets are kept
    if _looks_like_root(cache):
        return cache
    looked.append(f"the user cache {cache}")
    if download:
        try:
            return _download(cache)
        except Exception as err:  # network errors come in many types; all mean the same here
            looked.append(f"a download from {DOWNLOAD_BASE_URL} ({type(err).__name__}: {err})")
    raise SpritesDataError(
        "could not find the LPC layer sheets; looked at " + "; ".join(looked) + ". Point rodi at a "
        "local copy (a folder with body/, eyes/, shoes/, bottomwear/, topwear/, hair/) with "
        f"data.root=PATH, --data-root PATH or the environment variable {ENV_ROOT}."
    )


def _download(cache: Path) -> Path:
    fetcher = pooch.create(
        path=cache, base_url=DOWNLOAD_BASE_URL,
        registry={f: f"sha256:{h}" for f, h in SHEET_SHA256.items()},
    )
    for f in _sheet_files():
        fetcher.fetch(f)
    return cache


def _load_sheet(path: Path) -> np.ndarray:
    """Read one sheet as (21, 13, 64, 64, 4) uint8 RGBA cells."""
    try:
        with Image.open(path) as im:
            if im.size != SHEET_SIZE:
                raise SpritesDataError(f"{path}: expected a {SHEET_SIZE[0]}x{SHEET_SIZE[1]} "
                                       f"sheet, got {im.size}")
            rgba = np.asarray(im.convert("RGBA"))
    except (OSError, SyntaxError) as err:
        raise SpritesDataError(f"{path}: cannot read the layer sheet ({err})") from err
    return rgba.reshape(21, CELL, 13, CELL, 4).transpose(0, 2, 1, 3, 4)


class SpriteSheets(LabelledCharacters):
    """The layer cells of one protocol, held as uint8 tensors, and an exact compositor.

    Args:
        protocol: ``sprites`` or ``sprites-full``.
        root: folder of sheets, or None to search (see :func:`locate_sheets`).

    Attributes:
        layers: per layer name, a (choices, poses, 4, 64, 64) uint8 RGBA tensor.
    """

    def __init__(self, protocol: str = "sprites", root: str | os.PathLike | None = None):
        self.protocol = make_protocol(protocol)
        self.root = locate_sheets(root)
        rows = np.array([p.row for p in self.protocol.poses])
        cols = np.array([p.column for p in self.protocol.poses])
        self.layers: dict[str, torch.Tensor] = {}
        for layer in LAYER_ORDER:
            if layer in self.protocol.varied:
                choices = range(LAYER_CHOICES[layer])
            elif layer in self.protocol.fixed:
                choices = [self.protocol.fixed[layer]]
            else:
                continue
            cells = np.stack([_load_sheet(self.root / layer / f"{c}.png")[rows, cols]
                              for c in choices])
            self.layers[layer] = torch.from_numpy(cells).permute(0, 1, 4, 2, 3).contiguous()
        self.pose_labels = torch.tensor(
            [[p.action, p.direction, p.frame] for p in self.protocol.poses], dtype=torch.long
        )
        self.characters = torch.from_numpy(self.protocol.characters).long()

    image_size = CELL

    @property
    def num_poses(self) -> int:
        return len(self.protocol.poses)

    @property
    def appearance_attributes(self) -> tuple[str, ...]:
        """Names of the appearance labels: the layers that vary between characters."""
        return self.protocol.varied

    def render(self, character: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Composite characters in poses.

        Args:
            character: (B,) long, indices into ``protocol.characters``.
            pose: (B,) long, indices into ``protocol.poses``.

        Returns:
            (B, 3, 64, 64) float32 in [-1, 1]: black background, layers composited with
            ``out = rgb * a + out * (1 - a)`` in the documented order.
        """
        choices = self.characters[character]
        out = torch.zeros(len(character), 3, CELL, CELL)
        for layer, cells in self.layers.items():
            if layer in self.protocol.varied:
                choice = choices[:, self.protocol.varied.index(layer)]
            else:
                choice = torch.zeros_like(character)
            rgba = cells[choice, pose].float().div_(255.0)
            alpha = rgba[:, 3:]
            out = torch.addcmul(out * (1.0 - alpha), rgba[:, :3], alpha)
        return out.mul_(2.0).sub_(1.0)

    def _published_split(self, name: str) -> torch.Tensor:
        """Character indices of the published split ``train`` or ``test`` (see :meth:`split`)."""
        return torch.from_numpy(getattr(self.protocol, name)).long()

    def _example_poses(self, n: int, split: str, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(self.num_poses, generator=generator)[:n] % self.num_poses

"""``mocap``: a humanoid performing real motion-capture clips, rendered on the CPU with pybullet.

pybullet ships the DeepMimic humanoid and its motion-capture clips (walk, run, jump, kicks,
cartwheels, ...), so this source needs nothing beyond ``pip install``. Each *pose* (clip, frame,
camera yaw) is rendered once with pybullet's software renderer into a body-part map and a shading
map, at twice the image size, and cached on disk. An *appearance* (skin, shirt, sleeves, trousers,
shorts, shoes, background colours and body scale) is then painted onto those maps exactly, so any
appearance in any pose -- including the exact target of a transfer -- costs one gather, not a
render. Every image carries the exact 2-D keypoints of the humanoid's 15 joints in pixels.

Splits: appearances are split 80/20 with a fixed seed; clips are split by motion so that test poses
come from motions never seen in training (``TEST_CLIPS``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pybullet_data
import torch
import torch.nn.functional as F
from tqdm import tqdm

from rodi.cache import user_cache
from rodi.data.errors import DataError
from rodi.data.rendered import SPLITS, LabelledCharacters, cached_arrays

CLIPS = ("walk", "run", "jump", "punch", "spin", "dance_a", "cartwheel", "backflip", "crawl",
         "roll", "getup_facedown", "kick", "spinkick", "dance_b", "getup_faceup")
TEST_CLIPS = ("kick", "spinkick", "dance_b", "getup_faceup")

# DeepMimic frame layout: duration, root position (3), root rotation (w, x, y, z), then per joint a
# quaternion (w, x, y, z) for spherical joints or one angle for revolute ones.
JOINTS = (("chest", 1, 4), ("neck", 2, 4), ("right_hip", 3, 4), ("right_knee", 4, 1),
          ("right_ankle", 5, 4), ("right_shoulder", 6, 4), ("right_elbow", 7, 1),
          ("left_hip", 9, 4), ("left_knee", 10, 1), ("left_ankle", 11, 4),
          ("left_shoulder", 12, 4), ("left_elbow", 13, 1))
KEYPOINTS = ("root", "chest", "neck", "right_hip", "right_knee", "right_ankle", "right_shoulder",
             "right_elbow", "right_wrist", "left_hip", "left_knee", "left_ankle", "left_shoulder",
             "left_elbow", "left_wrist")
# pybullet link index (-1: base) -> body region that one colour attribute paints.
REGIONS = ("skin", "shirt", "sleeve", "trousers", "shorts", "shoes")
LINK_REGION = {-1: 3, 0: 3, 1: 1, 2: 0, 3: 3, 4: 4, 5: 5, 6: 1, 7: 2, 8: 0, 9: 3, 10: 4, 11: 5,
               12: 1, 13: 2, 14: 0}
BACKGROUND = 255

SKIN = ((255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36),
        (92, 56, 33))
CLOTH = ((200, 30, 30), (30, 140, 40), (30, 60, 190), (230, 200, 40), (120, 40, 160),
         (240, 120, 20), (20, 170, 180), (240, 240, 240), (60, 60, 60), (150, 90, 50),
         (240, 110, 170), (120, 150, 60))
SHOES = ((20, 20, 20), (110, 60, 30), (230, 230, 230), (160, 20, 20), (40, 40, 120),
         (200, 170, 100))
BACKGROUNDS = ((0, 0, 0), (70, 70, 70), (140, 140, 140), (40, 50, 90), (90, 60, 40), (40, 80, 50),
               (170, 160, 140), (110, 130, 160))
SCALES = (0.8, 0.875, 0.95, 1.025, 1.1)
# Appearance attributes: name -> number of choices. sleeves/shorts: 0 = long, 1 = short (skin).
ATTRIBUTES = {"skin": len(SKIN), "shirt": len(CLOTH), "sleeves": 2, "trousers": len(CLOTH),
              "shorts": 2, "shoes": len(SHOES), "background": len(BACKGROUNDS),
              "scale": len(SCALES)}
POSE_ATTRIBUTES = ("action", "direction", "frame")
NUM_APPEARANCES = 4000
SPLIT_SEED = 20191027
FRAME_BINS = 8  # the ``frame`` label: phase of the clip in eighths
CAMERA_DISTANCE = 2.3  # metres, looking horizontally at the pelvis (the camera follows it)
CAMERA_FOV = 45.0  # degrees
CACHE_VERSION = 2


class MocapDataError(DataError, RuntimeError):
    """pybullet or its data is missing, or the render cache cannot be built."""


@dataclass(frozen=True)
class MocapPoses:
    """Rendered poses: ``parts`` (P, 2S, 2S) uint8 region index (255 background), ``shading``
    (P, 2S, 2S) uint8 diffuse light on a white body, ``keypoints`` (P, 15, 2) float32 pixel
    coordinates (x, y) in the S x S image, and ``labels`` (P, 3) long: clip, yaw index, phase
    bin."""

    parts: np.ndarray
    shading: np.ndarray
    keypoints: np.ndarray
    labels: np.ndarray


def _import_pybullet():
    # imported here, not at the top: importing pybullet prints "pybullet build time: ..." from C to
    # stdout, so it is imported only to render (inside _quiet_native_output) or to read a clip,
    # never when rodi.data is imported or the renders come from the cache
    try:
        import pybullet
    except ImportError as err:  # pragma: no cover - pybullet is a dependency
        raise MocapDataError(f"the mocap source needs pybullet ({err}); "
                             "pip install pybullet") from None
    return pybullet, pybullet_data


@contextmanager
def _quiet_native_output():
    """Silence what pybullet's C++ code prints to stdout/stderr (URDF importer warnings)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
    except (OSError, ValueError):  # no real file descriptors (e.g. captured streams)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def load_clip(name: str) -> np.ndarray:
    """Frames of one DeepMimic clip shipped with pybullet: (T, 44) float64.

    Raises:
        MocapDataError: the clip file is missing or malformed.
    """
    _, pybullet_data = _import_pybullet()
    path = Path(pybullet_data.getDataPath()) / "data" / "motions" / f"humanoid3d_{name}.txt"
    try:
        frames = np.asarray(json.loads(path.read_text())["Frames"], dtype=np.float64)
    except (OSError, ValueError, KeyError) as err:
        raise MocapDataError(f"{path}: cannot read motion clip ({err})") from None
    if frames.ndim != 2 or frames.shape[1] != 44:
        raise MocapDataError(f"{path}: expected frames of 44 numbers, got shape {frames.shape}")
    return frames


def _wxyz_to_xyzw(q: np.ndarray) -> list[float]:
    return [float(q[1]), float(q[2]), float(q[3]), float(q[0])]


def _pixels(points: np.ndarray, view: np.ndarray, proj: np.ndarray, size: int) -> np.ndarray:
    """World points (K, 3) -> (K, 2) pixel coordinates (x right, y down) in a size x size image."""
    h = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ view.T @ proj.T
    ndc = h[:, :2] / h[:, 3:4]
    return np.stack([(ndc[:, 0] + 1) * size / 2, (1 - ndc[:, 1]) * size / 2], axis=1)


def render_poses(image_size: int, frame_stride: int = 3, yaws: int = 8,
                 clips: tuple[str, ...] = CLIPS, progress: bool = True) -> MocapPoses:
    """Render every (clip, frame, yaw) with pybullet's TinyRenderer at 2 x ``image_size``.

    Frames are taken every ``frame_stride``-th frame of each clip (30 frames per second), the
    camera circles the humanoid in ``yaws`` equal steps at the height of the pelvis, which it
    follows, and the root's horizontal translation is removed, so the body stays centred and fills
    the frame whether it stands, crawls or jumps.

    Raises:
        MocapDataError: pybullet cannot load the humanoid or a clip.
    """
    with _quiet_native_output():
        pb, pybullet_data = _import_pybullet()
        client = pb.connect(pb.DIRECT)
    size = 2 * image_size
    try:
        pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
        try:
            with _quiet_native_output():
                body = pb.loadURDF("humanoid/humanoid.urdf", [0, 0, 0], globalScaling=0.25,
                                   flags=pb.URDF_MAINTAIN_LINK_ORDER, physicsClientId=client)
        except pb.error as err:
            raise MocapDataError(f"pybullet cannot load its humanoid ({err})") from None
        for link in range(-1, pb.getNumJoints(body, physicsClientId=client)):
            pb.changeVisualShape(body, link, rgbaColor=[1, 1, 1, 1], physicsClientId=client)
        proj = pb.computeProjectionMatrixFOV(CAMERA_FOV, 1.0, 0.1, 20.0)
        proj_np = np.asarray(proj).reshape(4, 4).T
        link_to_region = np.full(17, BACKGROUND, dtype=np.uint8)
        for link, region in LINK_REGION.items():
            link_to_region[link + 1] = region
        selected = [(c, clip, i, len(frames)) for c, clip in enumerate(clips)
                    for frames in [load_clip(clip)] for i in range(0, len(frames), frame_stride)]
        frames_of = {clip: load_clip(clip) for clip in clips}
        n = len(selected) * yaws
        parts = np.empty((n, size, size), np.uint8)
        shading = np.empty((n, size, size), np.uint8)
        keypoints = np.empty((n, len(KEYPOINTS), 2), np.float32)
        labels = np.empty((n, 3), np.int64)
        k = 0
        for c, clip, i, length in tqdm(selected, desc="rendering mocap poses", disable=not progress,
                                       unit="frame", dynamic_ncols=True):
            f = frames_of[clip][i]
            pb.resetBasePositionAndOrientation(body, [0.0, f[2], 0.0], _wxyz_to_xyzw(f[4:8]),
                                               physicsClientId=client)
            offset = 8
            for _, joint, dofs in JOINTS:
                value = f[offset:offset + dofs]
                target = _wxyz_to_xyzw(value) if dofs == 4 else [float(value[0])]
                pb.resetJointStateMultiDof(body, joint, target, physicsClientId=client)
                offset += dofs
            points = [pb.getBasePositionAndOrientation(body, physicsClientId=client)[0]]
            points += [pb.getLinkState(body, j, physicsClientId=client)[4] for j in range(1, 15)]
            points = np.asarray(points, dtype=np.float64)
            for y in range(yaws):
                view = pb.computeViewMatrixFromYawPitchRoll(
                    [0.0, float(f[2]), 0.0], CAMERA_DISTANCE, 360.0 * y / yaws, 0.0, 0.0,
                    upAxisIndex=1)
                _, _, rgba, _, seg = pb.getCameraImage(
                    size, size, view, proj, renderer=pb.ER_TINY_RENDERER,
                    flags=pb.ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX, shadow=0,
                    lightDirection=[0.4, 1.0, 0.6], lightAmbientCoeff=0.45, lightDiffuseCoeff=0.6,
                    lightSpecularCoeff=0.0, physicsClientId=client)
                seg = np.asarray(seg, dtype=np.int64).reshape(size, size)
                link = np.where(seg < 0, -1, (seg >> 24) - 1)
                parts[k] = np.where(seg < 0, BACKGROUND, link_to_region[link + 1])
                shading[k] = np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[..., 0]
                keypoints[k] = _pixels(points, np.asarray(view).reshape(4, 4).T, proj_np,
                                       image_size)
                labels[k] = (c, y, min(FRAME_BINS - 1, i * FRAME_BINS // length))
                k += 1
    finally:
        pb.disconnect(client)
    return MocapPoses(parts, shading, keypoints, labels)


def _cache_key(image_size: int, frame_stride: int, yaws: int, clips: tuple[str, ...]) -> str:
    clip_bytes = b"".join((Path(pybullet_data.getDataPath()) / "data" / "motions" /
                           f"humanoid3d_{c}.txt").read_bytes() for c in clips)
    spec = json.dumps([CACHE_VERSION, image_size, frame_stride, yaws, clips, CAMERA_DISTANCE,
                       CAMERA_FOV, sorted(LINK_REGION.items())]).encode()
    return hashlib.sha256(spec + clip_bytes).hexdigest()[:16]


def cached_poses(image_size: int, frame_stride: int = 3, yaws: int = 8,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True) -> MocapPoses:
    """:func:`render_poses`, rendered once and then read from ``cache_dir`` (default: the user
    cache's ``mocap`` folder, see :func:`rodi.cache.user_cache`). The cache file is written
    atomically and named by a hash of the settings and the clips, so a changed setting renders
    again and a killed build leaves nothing.
    """
    cache = Path(cache_dir) if cache_dir is not None else user_cache("mocap")
    path = cache / f"poses-{image_size}-{_cache_key(image_size, frame_stride, yaws, CLIPS)}.npz"
    arrays = cached_arrays(
        path, lambda: vars(render_poses(image_size, frame_stride, yaws, CLIPS, progress)),
        "mocap renders")
    return MocapPoses(arrays["parts"], arrays["shading"], arrays["keypoints"], arrays["labels"])


def appearance_table(n: int = NUM_APPEARANCES, seed: int = SPLIT_SEED) -> np.ndarray:
    """(n, len(ATTRIBUTES)) int64 attribute choices of the appearances, fixed by ``seed``.
    Shirt and trousers differ, and neither has the background's index colour."""
    rs = np.random.RandomState(seed)
    table = np.stack([rs.randint(k, size=n) for k in ATTRIBUTES.values()], axis=1)
    names = list(ATTRIBUTES)
    shirt, trousers = names.index("shirt"), names.index("trousers")
    same = table[:, shirt] == table[:, trousers]
    table[same, trousers] = (table[same, trousers] + 1
                             + rs.randint(len(CLOTH) - 1, size=same.sum())) % len(CLOTH)
    return table.astype(np.int64)


class MocapHumanoid(LabelledCharacters):
    """Appearances painted on cached renders of the humanoid; the interface of
    :class:`rodi.data.sprites.SpriteSheets` (characters are appearances), plus keypoints.

    Args:
        image_size: side S of the square images in pixels.
        frame_stride: every how many clip frames (at 30 frames/s) a pose is rendered.
        yaws: camera directions around the body.
        cache_dir: where renders are cached (default: the user cache's ``mocap`` folder).
        progress: show a progress bar while rendering the first time.

    Raises:
        MocapDataError: pybullet or its clips are unusable.
    """

    appearance_attributes = tuple(ATTRIBUTES)
    pose_attributes = POSE_ATTRIBUTES

    def __init__(self, image_size: int = 64, frame_stride: int = 3, yaws: int = 8,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True):
        if image_size < 8:
            raise MocapDataError(f"image_size must be at least 8 pixels, got {image_size}")
        self.image_size = image_size
        poses = cached_poses(image_size, frame_stride, yaws, cache_dir, progress)
        regions = np.minimum(poses.parts, len(REGIONS)).astype(np.int16)
        shading = np.where(poses.parts == BACKGROUND, 255, poses.shading).astype(np.int16)
        self._packed = torch.from_numpy(regions * 256 + shading)  # (P, 2S, 2S) region * 256 + light
        self.pose_keypoints = torch.from_numpy(np.ascontiguousarray(poses.keypoints))
        self.pose_labels = torch.from_numpy(np.ascontiguousarray(poses.labels))
        self.characters = torch.from_numpy(appearance_table())
        order = np.random.RandomState(SPLIT_SEED + 1).permutation(len(self.characters))
        n_test = len(order) // 5
        self._appearances = {"train": torch.from_numpy(np.sort(order[n_test:])),
                             "test": torch.from_numpy(np.sort(order[:n_test]))}
        test_clip = torch.tensor([CLIPS[c] in TEST_CLIPS for c in self.pose_labels[:, 0].tolist()])
        self._poses = {"train": torch.nonzero(~test_clip).squeeze(1),
                       "test": torch.nonzero(test_clip).squeeze(1)}
        palettes = {"skin": SKIN, "shirt": CLOTH, "trousers": CLOTH, "shoes": SHOES,
                    "background": BACKGROUNDS}
        self._palettes = {k: torch.tensor(v, dtype=torch.float32) / 127.5 - 1.0
                          for k, v in palettes.items()}
        self._scales = torch.tensor(SCALES, dtype=torch.float32)
        side = 2 * image_size
        centre = torch.arange(side, dtype=torch.float64) + 0.5 - image_size
        source = torch.stack([(centre / s + image_size - 0.5).round().long() for s in SCALES])
        source = torch.where((source >= 0) & (source < side), source,
                             torch.full_like(source, -side * side))
        flat = source[:, :, None] * side + source[:, None, :]
        self._zoom = flat.clamp(min=-1)  # (len(SCALES), 2S, 2S) flat source index, -1 outside

    @property
    def num_poses(self) -> int:
        return len(self.pose_labels)

    def _published_split(self, name: str) -> torch.Tensor:
        """Appearance indices of the published split ``train`` or ``test`` (see :meth:`split`)."""
        return self._appearances[name]

    def pose_split(self, name: str) -> torch.Tensor:
        """Pose indices of split ``train`` and ``validation`` (training clips) or ``test``
        (held-out clips): validation holds out appearances only, so model selection sees no test
        clip either."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return self._poses["test" if name == "test" else "train"]

    def _attribute(self, character: torch.Tensor, name: str) -> torch.Tensor:
        return self.characters[character, self.appearance_attributes.index(name)]

    def region_colours(self, character: torch.Tensor) -> torch.Tensor:
        """(B, len(REGIONS) + 1, 3) colours in [-1, 1] of each body region, then the background."""
        skin = self._palettes["skin"][self._attribute(character, "skin")]
        shirt = self._palettes["shirt"][self._attribute(character, "shirt")]
        trousers = self._palettes["trousers"][self._attribute(character, "trousers")]
        short_sleeves = self._attribute(character, "sleeves").bool().unsqueeze(1)
        shorts = self._attribute(character, "shorts").bool().unsqueeze(1)
        regions = [skin, shirt, torch.where(short_sleeves, skin, shirt), trousers,
                   torch.where(shorts, skin, trousers),
                   self._palettes["shoes"][self._attribute(character, "shoes")],
                   self._palettes["background"][self._attribute(character, "background")]]
        return torch.stack(regions, dim=1)

    def _scaled(self, pose: torch.Tensor, level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Part maps (B, 2S, 2S) long (``len(REGIONS)`` for background) and shading (B, 2S, 2S)
        long in [0, 255] of ``pose``, zoomed by ``SCALES[level]`` about the image centre (nearest
        neighbour at twice the resolution)."""
        index = self._zoom[level]  # (B, 2S, 2S) flat source pixel, -1 outside
        packed = self._packed[pose].flatten(1)  # region * 256 + shading
        out = packed.gather(1, index.clamp(min=0).flatten(1)).view_as(index).long()
        out = out.masked_fill_(index < 0, len(REGIONS) * 256 + 255)
        return out >> 8, out & 255

    def render(self, character: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Appearances ``character`` in poses ``pose``.

        Args:
            character: (B,) long appearance indices.
            pose: (B,) long pose indices.

        Returns:
            (B, 3, S, S) float32 in [-1, 1]: each region's colour times the rendered diffuse light,
            on the appearance's background, box-filtered from twice the resolution.
        """
        character, pose = character.long(), pose.long()
        n = len(pose)
        parts, shading = self._scaled(pose, self._attribute(character, "scale"))
        # (B, R + 1, 3) in [0, 2], background last
        colours = self.region_colours(character).add_(1.0)
        rgb = F.embedding(parts + (torch.arange(n) * (len(REGIONS) + 1)).view(-1, 1, 1),
                          colours.flatten(0, 1))
        light = shading.float().mul_(1.0 / 255.0)  # background shading is 255: unlit colour
        img = F.avg_pool2d(rgb.mul_(light.unsqueeze(-1)).permute(0, 3, 1, 2), 2)
        return img.sub_(1.0).contiguous()

    def keypoints(self, character: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """(B, 15, 2) float32 exact joint positions (x, y) in pixels of the S x S image, in the
        order of ``KEYPOINTS``."""
        scale = self._scales[self._attribute(character.long(), "scale")].view(-1, 1, 1)
        centre = self.image_size / 2
        return (self.pose_keypoints[pose.long()] - centre) * scale + centre

    def _random_poses(self, split: str, n: int, generator: torch.Generator) -> torch.Tensor:
        poses = self.pose_split(split)
        return poses[torch.randint(len(poses), (n,), generator=generator)]

    def _pose_pairs(self, n: int, split: str,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent poses of the split's clips (test poses come from held-out clips)."""
        return self._random_poses(split, n, generator), self._random_poses(split, n, generator)

    def _example_poses(self, n: int, split: str, generator: torch.Generator) -> torch.Tensor:
        return self._random_poses(split, n, generator)

    def _extras(self, character: torch.Tensor, pose: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"keypoints": self.keypoints(character, pose)}


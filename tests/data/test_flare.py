"""Flare heroes: pairs share a character, targets are exact, the layers land where a full-size
composite puts them, a layer changes only its own pixels, the box holds every frame, the layer
cache is reused and rebuilt, and missing data says how to get it."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rodi.data import flare
from rodi.data.flare import (
    ACTIONS,
    BARE_HEAD,
    ENEMIES,
    GENDERS,
    LAYER_CHOICES,
    LAYERS,
    FlareDataError,
    FlareHeroes,
    locate_flare,
    parse_animations,
)


@pytest.fixture(scope="module")
def flare_root():
    try:
        return locate_flare()
    except FlareDataError as err:
        pytest.skip(f"Flare game data not available offline: {err}")


@pytest.fixture(scope="module")
def layer_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("flare-layers")


@pytest.fixture(scope="module")
def heroes(flare_root, layer_cache):
    return FlareHeroes(64, root=flare_root, cache_dir=layer_cache, progress=False)


def _pose(heroes, action, direction, frame):
    wanted = torch.tensor([ACTIONS.index(action), direction, frame])
    return int((heroes.pose_labels == wanted).all(1).nonzero()[0, 0])


def _reference(heroes, root, character, pose):
    """Full-size composite with Pillow, resampled into the box: (3, S, S) in [-1, 1]."""
    choices = heroes.characters[character].tolist()
    gender = GENDERS[choices[0]]
    action, direction, frame = heroes.pose_labels[pose].tolist()
    canvas = Image.new("RGBA", (256, 256))
    for layer in heroes.layer_order[direction].tolist():
        name = LAYER_CHOICES[LAYERS[layer]][choices[1 + layer]]
        name = BARE_HEAD[gender] if name == "head" else name
        anim = parse_animations(root / f"animations/avatar/{gender}/{name}.txt") if name else None
        rect = anim.frames.get((ACTIONS[action], frame, direction)) if anim else None
        if rect is None:
            continue
        x, y, w, h, ox, oy = rect
        placed = Image.new("RGBA", (256, 256))
        sheet = Image.open(root / anim.image).convert("RGBA")
        placed.paste(sheet.crop((x, y, x + w, y + h)), (128 - ox, 128 - oy))
        canvas = Image.alpha_composite(canvas, placed)
    left, top, side = heroes.box
    s = heroes.image_size
    box = (128 + left, 128 + top, 128 + left + side, 128 + top + side)
    small = canvas.convert("RGBa").resize((s, s), Image.BOX, box=box)
    return torch.from_numpy(np.asarray(small)[..., :3].copy()).permute(2, 0, 1).float() / 127.5 - 1


def test_there_are_272_poses_and_4000_distinct_characters_split_80_20(heroes):
    assert heroes.num_poses == 8 * 34
    assert len(torch.unique(heroes.pose_labels, dim=0)) == heroes.num_poses
    assert len(torch.unique(heroes.characters, dim=0)) == len(heroes.characters) == 4000
    train, validation, test = (set(heroes.split(k).tolist())
                               for k in ("train", "validation", "test"))
    assert not train & test and not validation & (train | test)
    assert len(train | validation | test) == 4000 and len(test) == 800 and len(validation) == 320
    sizes = [len(GENDERS)] + [len(c) for c in LAYER_CHOICES.values()]
    assert (heroes.characters.max(0).values < torch.tensor(sizes)).all()
    with pytest.raises(ValueError, match="unknown split"):
        heroes.split("val")


def test_layer_order_follows_the_mods_hero_layers_file(heroes):
    facing = {d: tuple(LAYERS[i] for i in heroes.layer_order[d].tolist()) for d in (0, 4, 5)}
    assert facing[0] == ("main_hand", "feet", "legs", "hands", "chest", "head", "off_hand")
    assert facing[4] == ("off_hand", "feet", "legs", "hands", "chest", "head", "main_hand")
    assert facing[5] == ("feet", "legs", "hands", "chest", "head", "off_hand", "main_hand")


def test_training_pairs_share_a_character_and_differ_in_pose(heroes):
    batch = heroes.sample_pairs(32, torch.Generator().manual_seed(0))
    assert batch["pose_image"].shape == batch["appearance_image"].shape == (32, 3, 64, 64)
    assert batch["pose_image"].dtype == torch.float32
    assert batch["pose_image"].min() >= -1 and batch["pose_image"].max() <= 1
    assert torch.equal(batch["pose_character"], batch["appearance_character"])
    assert (batch["pose_pose"] != batch["appearance_pose"]).all()
    assert set(batch["pose_character"].tolist()) <= set(heroes.split("train").tolist())
    for key in heroes.appearance_attributes + heroes.pose_attributes:
        assert batch[f"pose_{key}"].shape == batch[f"appearance_{key}"].shape == (32,)
    again = heroes.sample_pairs(32, torch.Generator().manual_seed(0))
    assert torch.equal(again["pose_image"], batch["pose_image"])


def test_triplet_target_is_character_a_in_pose_p(heroes):
    idx = heroes.triplet_indices(12, seed=3)
    a, b, p, q = idx.unbind(1)
    assert (a != b).all() and (p != q).all()
    assert set(a.tolist()) | set(b.tolist()) <= set(heroes.split("test").tolist())
    t = heroes.triplets(idx)
    assert torch.equal(t["target"], heroes.render(a, p))
    assert torch.equal(t["appearance_image"], heroes.render(a, q))
    assert torch.equal(t["pose_image"], heroes.render(b, p))
    assert torch.equal(heroes.triplet_indices(12, seed=3), idx)
    appearance, pose = heroes.fixed_examples(4)
    assert appearance["image"].shape == pose["image"].shape == (4, 3, 64, 64)


def test_render_matches_a_full_size_composite_resampled_into_the_box(heroes, flare_root):
    g = torch.Generator().manual_seed(1)
    characters = torch.randint(len(heroes.characters), (4,), generator=g)
    poses = torch.randint(heroes.num_poses, (4,), generator=g)
    ours = heroes.render(characters, poses)
    for image, c, p in zip(ours, characters.tolist(), poses.tolist()):
        diff = (image - _reference(heroes, flare_root, c, p)).abs()
        # layers are resampled before compositing: only pixels where two layers' edges meet differ
        assert diff.mean() < 0.01
        assert (diff.amax(0) > 0.05).float().mean() < 0.05


def test_a_layer_choice_changes_pixels_only_where_that_layer_is(heroes, monkeypatch):
    base = heroes.characters[int(heroes.split("test")[0])].clone()
    pose = torch.tensor([_pose(heroes, "stance", d, 1) for d in (0, 3, 6)])
    for layer, choices in LAYER_CHOICES.items():
        column = 1 + LAYERS.index(layer)
        rows = base.repeat(2, 1)
        rows[0, column] = 1  # a dressed or armed choice
        rows[1, column] = len(choices) - 1
        monkeypatch.setattr(heroes, "characters", rows)
        images = heroes.render(torch.tensor([0, 0, 0, 1, 1, 1]), pose.repeat(2))
        changed = (images[:3] - images[3:]).abs().amax(1) > 0
        covered = sum(heroes.layer_alpha(torch.full((3,), c), pose, layer) for c in (0, 1)) > 0
        assert changed.any(), layer
        assert not (changed & ~covered).any(), layer


def test_every_pose_shows_a_figure_that_never_touches_the_border(heroes):
    n = heroes.num_poses
    for character in heroes.split("test")[:3].tolist():
        images = heroes.render(torch.full((n,), character), torch.arange(n))
        figure = (images > -1).any(1)
        assert (figure.flatten(1).sum(1) > 30).all()
        border = torch.cat([figure[:, 0], figure[:, -1], figure[:, :, 0], figure[:, :, -1]], dim=1)
        assert not border.any()
    for e in range(len(ENEMIES)):
        figure = (heroes.enemy_images(torch.full((n,), e), torch.arange(n)) > -1).any(1)
        assert (figure.flatten(1).sum(1) > 30).all()


def test_the_layer_cache_is_reused_and_an_unreadable_one_rebuilt(heroes, flare_root, layer_cache,
                                                                  monkeypatch):
    real_build = flare.build_layer_frames

    def fail(*args, **kwargs):
        raise AssertionError("the layer cache should have been reused")

    monkeypatch.setattr(flare, "build_layer_frames", fail)
    again = FlareHeroes(64, root=flare_root, cache_dir=layer_cache, progress=False)
    c, p = torch.arange(8), torch.arange(8) * 30
    assert torch.equal(again.render(c, p), heroes.render(c, p))

    (cache_file,) = layer_cache.glob("layers-64-*.npz")
    saved = np.load(cache_file)
    frames = flare.LayerFrames(*(saved[k] for k in ("pixels", "frames", "hero", "enemy", "box")))
    cache_file.write_bytes(b"not a zip file")
    built = []
    monkeypatch.setattr(flare, "build_layer_frames", lambda *a, **k: built.append(1) or frames)
    rebuilt = FlareHeroes(64, root=flare_root, cache_dir=layer_cache, progress=False)
    assert built and torch.equal(rebuilt.render(c, p), heroes.render(c, p))
    monkeypatch.setattr(flare, "build_layer_frames", real_build)
    with np.load(cache_file) as z:
        assert np.array_equal(z["pixels"], frames.pixels)


def _fake_package(flare_root, fail_unpack=False):
    """A stand-in for `apt-get download` and `dpkg-deb -x` that unpacks ``flare_root``."""

    def run(command, cwd):
        if command[0] == "apt-get":
            (cwd / "flare-game_1.14-1_all.deb").write_bytes(b"")
        elif fail_unpack:
            raise FlareDataError("dpkg-deb: disk full")
        else:
            package = Path(command[-1])
            shutil.copytree(flare_root, package / flare.MOD_PATH)
            (package / flare.COPYRIGHT_PATH).parent.mkdir(parents=True)
            (package / flare.COPYRIGHT_PATH).write_text("CC-BY-SA-3.0+")
    return run


def test_download_moves_only_the_needed_files_into_the_cache(flare_root, tmp_path, monkeypatch):
    monkeypatch.delenv(flare.ENV_ROOT, raising=False)
    monkeypatch.setattr(flare, "_run", _fake_package(flare_root, fail_unpack=True))
    with pytest.raises(FlareDataError, match="disk full"):
        locate_flare(cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # no partial folder left behind

    copies = []

    def copy_then_fail(src, dst):
        copies.append(src)
        if len(copies) == 20:
            raise OSError("No space left on device")
        return shutil.copyfile(src, dst)

    monkeypatch.setattr(flare, "_run", _fake_package(flare_root))
    monkeypatch.setattr(flare.shutil, "copy2", copy_then_fail)
    with pytest.raises(FlareDataError, match="No space left"):
        locate_flare(cache_dir=tmp_path)
    assert len(copies) == 20 and not any(tmp_path.iterdir())  # failed while moving files in
    monkeypatch.undo()

    monkeypatch.delenv(flare.ENV_ROOT, raising=False)
    monkeypatch.setattr(flare, "_run", _fake_package(flare_root))
    mod = locate_flare(cache_dir=tmp_path)
    assert mod == tmp_path / "fantasycore"
    assert os.listdir(tmp_path) == ["fantasycore"]
    stored = sorted(str(f.relative_to(mod)) for f in mod.rglob("*") if f.is_file())
    assert stored == sorted(flare.needed_files(flare_root) + ["copyright"])
    assert not any(f.startswith("images/avatar/male/clothes") for f in stored)

    (mod / "engine" / "hero_layers.txt").unlink()  # an incomplete cache is fetched again
    assert locate_flare(cache_dir=tmp_path) == mod
    assert (mod / "engine" / "hero_layers.txt").is_file()
    assert os.listdir(tmp_path) == ["fantasycore"]


def test_missing_data_names_the_ways_to_obtain_it(tmp_path, monkeypatch):
    with pytest.raises(FlareDataError, match="does not hold the Flare avatar data") as err:
        locate_flare(tmp_path / "nowhere", download=False)
    for way in ("apt-get download flare-game", "dpkg-deb -x", "github.com/flareteam/flare-game",
                "RODI_FLARE_ROOT", "data.root"):
        assert way in str(err.value)
    monkeypatch.delenv(flare.ENV_ROOT, raising=False)
    with pytest.raises(FlareDataError, match="looked at .*RODI_FLARE_ROOT.*the cache"):
        locate_flare(cache_dir=tmp_path, download=False)

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from rodi.data.sprites import (
    CELL,
    LAYER_CHOICES,
    LAYER_ORDER,
    SHEET_ROWS,
    SHEET_SHA256,
    SHEET_SIZE,
    SpritesDataError,
    SpriteSheets,
    locate_sheets,
    make_protocol,
)


def test_sprites_protocol_has_1296_characters_72_poses_and_the_published_split():
    p = make_protocol("sprites")
    assert len(p.characters) == 1296 and len(p.poses) == 72
    assert len(p.train) == 1000 and len(p.test) == 296
    assert not set(p.train) & set(p.test)
    # attribute choices 0-5 for body, bottomwear, topwear, hair
    assert p.characters.min() == 0 and p.characters.max() == 5
    assert {(q.action, q.direction) for q in p.poses} == {(a, d) for a in range(3)
                                                           for d in range(3)}


def test_sprites_full_protocol_uses_every_layer_choice_and_every_cell():
    p = make_protocol("sprites-full")
    assert len(p.characters) == 7 * 5 * 3 * 7 * 7 * 10
    assert len(p.poses) == 178
    assert len(p.train) + len(p.test) == len(p.characters)


def test_unknown_protocol_is_an_error():
    with pytest.raises(ValueError, match="unknown Sprites protocol"):
        make_protocol("sprites-mini")


def test_composite_matches_a_known_pixel(sheets, sheets_root):
    # Compose one character by hand with Pillow's alpha_composite, in the documented order, and
    # compare a pixel where hair covers the body.
    character = 0
    body, bottom, top, hair = sheets.characters[character].tolist()
    canvas = Image.new("RGBA", (832, 1344), "black")
    for layer, choice in (("body", body), ("shoes", 1), ("bottomwear", bottom), ("topwear", top),
                          ("hair", hair)):
        sheet = Image.open(sheets_root / layer / f"{choice}.png").convert("RGBA")
        canvas = Image.alpha_composite(canvas, sheet)
    pose = 0  # walk, left, frame 0: sheet row 9, column 8
    p = sheets.protocol.poses[pose]
    assert (p.row, p.column) == (9, 8)
    cell = np.asarray(canvas)[p.row * 64:(p.row + 1) * 64, p.column * 64:(p.column + 1) * 64, :3]
    ours = sheets.render(torch.tensor([character]), torch.tensor([pose]))[0]
    ours = ((ours + 1) * 127.5).permute(1, 2, 0).numpy()
    hair_sheet = Image.open(sheets_root / "hair" / f"{hair}.png").convert("RGBA")
    hair_alpha = np.asarray(hair_sheet)[..., 3]
    hair_cell = hair_alpha[p.row * 64:(p.row + 1) * 64, p.column * 64:(p.column + 1) * 64]
    ys, xs = np.nonzero(hair_cell == 255)
    y, x = ys[0], xs[0]
    np.testing.assert_allclose(ours[y, x], cell[y, x], atol=1e-3)
    np.testing.assert_allclose(ours, cell, atol=0.51)  # Pillow rounds to integers
    assert ours[0, 0].tolist() == [0.0, 0.0, 0.0]  # black background


def test_training_pairs_share_a_character_and_differ_in_pose(sheets):
    g = torch.Generator().manual_seed(0)
    b = sheets.sample_pairs(64, g)
    assert b["pose_image"].shape == (64, 3, 64, 64)
    assert b["pose_image"].min() >= -1 and b["pose_image"].max() <= 1
    assert torch.equal(b["pose_character"], b["appearance_character"])
    assert (b["pose_pose"] != b["appearance_pose"]).all()
    assert set(b["pose_character"].tolist()) <= set(sheets.split("train").tolist())
    for k in ("body", "bottomwear", "topwear", "hair", "action", "direction", "frame"):
        assert b[f"pose_{k}"].shape == (64,)


def test_triplet_target_is_character_a_in_pose_p(sheets):
    idx = sheets.triplet_indices(50, seed=3)
    a, b, p, q = idx.unbind(1)
    assert (a != b).all() and (p != q).all()
    assert set(a.tolist()) | set(b.tolist()) <= set(sheets.split("test").tolist())
    t = sheets.triplets(idx)
    assert torch.equal(t["target"], sheets.render(a, p))
    assert torch.equal(t["appearance_image"], sheets.render(a, q))
    assert torch.equal(t["pose_image"], sheets.render(b, p))
    assert torch.equal(sheets.triplet_indices(50, seed=3), idx)


def test_missing_sheets_name_where_rodi_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("RODI_SPRITES_ROOT", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("rodi.data.sprites._download",
                        lambda cache: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(SpritesDataError, match="RODI_SPRITES_ROOT") as err:
        locate_sheets(None)
    assert "offline" in str(err.value) and "--data-root" in str(err.value)
    with pytest.raises(SpritesDataError, match="missing 39 of 39"):
        locate_sheets(tmp_path)


def test_environment_variable_points_at_the_sheets(sheets_root, monkeypatch):
    monkeypatch.setenv("RODI_SPRITES_ROOT", str(sheets_root))
    assert locate_sheets(None) == sheets_root


def _serve(folder):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _sha256(path) -> str:
    """The hex sha256 of a file's bytes, as in ``SHEET_SHA256``."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sheets_are_downloaded_into_the_cache_and_checked(sheets_root, tmp_path, monkeypatch):
    import shutil

    served = tmp_path / "served"
    shutil.copytree(sheets_root, served)
    server = _serve(served)
    try:
        # the registry of the sheets served (the published one where they are the real sheets: see
        # test_the_real_sheets_are_the_published_ones)
        monkeypatch.setattr("rodi.data.sprites.SHEET_SHA256",
                            {f: _sha256(served / f) for f in SHEET_SHA256})
        monkeypatch.delenv("RODI_SPRITES_ROOT", raising=False)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.setattr("rodi.data.sprites.DOWNLOAD_BASE_URL", f"http://127.0.0.1:{server.server_port}/")
        root = locate_sheets(None)
        assert root == tmp_path / "cache" / "rodi" / "lpc-sprites"
        assert ((root / "hair" / "9.png").read_bytes()
                == (sheets_root / "hair" / "9.png").read_bytes())

        # a tampered file on the server fails its checksum and is not accepted into the cache
        shutil.rmtree(root)
        (served / "hair" / "9.png").write_bytes(b"tampered")
        with pytest.raises(SpritesDataError, match="download"):
            locate_sheets(None)
        assert not (root / "hair" / "9.png").exists()
    finally:
        server.shutdown()


def test_validation_characters_are_held_out_of_the_published_training_ones(sheets):
    """Model selection never sees test characters: 100 of the 1,000 training characters."""
    train, validation, test = (set(sheets.split(k).tolist())
                               for k in ("train", "validation", "test"))
    assert len(validation) == 100 and len(train) == 900 and len(test) == 296
    assert not validation & train and not validation & test
    assert train | validation == set(sheets.protocol.train.tolist())
    batch = sheets.sample_pairs(256, torch.Generator().manual_seed(0))
    assert not set(batch["pose_character"].tolist()) & validation
    a = sheets.triplet_indices(500, seed=99, split="validation")[:, :2].flatten()
    assert set(a.tolist()) <= validation


def test_the_real_sheets_are_the_published_ones(real_sheets_root):
    """The sheets found are byte for byte the ones published with the Sprites benchmark (the
    checksums a download is verified against)."""
    assert {f: _sha256(real_sheets_root / f) for f in SHEET_SHA256} == SHEET_SHA256


def test_synthetic_sheets_have_the_loaders_layout(synthetic_sheets_root):
    """Every sheet the loader reads, at the sheet size, drawn only in the cells of an action's
    frames."""
    assert locate_sheets(synthetic_sheets_root) == synthetic_sheets_root
    assert sorted(SHEET_SHA256) == sorted(f"{k}/{i}.png" for k in LAYER_ORDER
                                          for i in range(LAYER_CHOICES[k]))
    drawn = np.zeros((SHEET_SIZE[1] // CELL, SHEET_SIZE[0] // CELL), bool)
    for _, first_row, n_frames, directions in SHEET_ROWS:
        drawn[first_row:first_row + len(directions), :n_frames] = True
    for name in SHEET_SHA256:
        with Image.open(synthetic_sheets_root / name) as im:
            assert im.size == SHEET_SIZE and im.mode == "P"
            alpha = np.asarray(im.convert("RGBA"))[..., 3]
        assert set(np.unique(alpha)) <= {0, 255}  # like the real sheets: opaque or transparent
        cells = alpha.reshape(drawn.shape[0], CELL, drawn.shape[1], CELL).max(axis=(1, 3)) > 0
        assert not (cells & ~drawn).any(), f"{name} draws in a cell no action uses"
        if not name.startswith("eyes/"):  # eyes are not seen from the back
            assert cells[drawn].all(), f"{name} leaves a pose's cell empty"


def test_synthetic_sheets_tell_every_pose_and_every_character_apart(synthetic_sheets_root):
    """Different cells (action, direction, frame) and different layer choices render differently, so
    the synthetic sheets exercise pose and appearance as the real ones do."""
    full = SpriteSheets("sprites-full", synthetic_sheets_root)
    poses = full.render(torch.zeros(full.num_poses, dtype=torch.long), torch.arange(full.num_poses))
    assert len(torch.unique(poses.flatten(1), dim=0)) == full.num_poses == 178
    walk_front = [(p.action, p.direction, p.frame) for p in full.protocol.poses].index((2, 2, 0))
    # one character per choice of this layer, the others at 0
    for i, layer in enumerate(LAYER_ORDER):
        others = [j for j in range(len(LAYER_ORDER)) if j != i]
        chars = torch.nonzero((full.characters[:, others] == 0).all(1)).squeeze(1)
        images = full.render(chars, torch.full_like(chars, walk_front))
        assert len(torch.unique(images.flatten(1), dim=0)) == LAYER_CHOICES[layer], layer
    sprites = SpriteSheets("sprites", synthetic_sheets_root)
    n = len(sprites.characters)
    everyone = sprites.render(torch.arange(n), torch.zeros(n, dtype=torch.long))
    assert len(torch.unique(everyone.flatten(1), dim=0)) == 1296
    assert (everyone[:, :, 0, 0] == -1).all()  # on the black background

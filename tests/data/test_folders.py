import csv
import hashlib
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import rodi.data.folders as folders
from conftest import write_video
from rodi.data.folders import (
    IdentityFolder,
    IndexFile,
    PairDataError,
    PairDataWarning,
    VideoFolder,
    open_pair_source,
)
from rodi.data.images import load_image
from rodi.data.inspect import inspect_source

S = 16


def identity_colour(k: int) -> int:
    return 10 + 9 * k


def write_image(path, identity: int, image: int, size=(S, S)) -> None:
    """A square of the identity's red on black, with a white mark whose column says which image."""
    a = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    a[..., 0] = identity_colour(identity)
    a[2:6, image:image + 2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def make_identities(root, names=("anna", "ben", "cleo"), per=4):
    for k, name in enumerate(names):
        for j in range(per):
            write_image(root / name / f"img{j}.png", k, j)
    return root


def write_moving_square(path, frames=12, rate=12, size=32) -> None:
    """Frames of a white square moving right by 2 pixels a frame."""
    a = np.zeros((frames, size, size, 3), dtype=np.uint8)
    for i in range(frames):
        a[i, 4:12, 2 * i:2 * i + 8] = 255
    write_video(path, a, rate)


@pytest.fixture
def opts(tmp_path):
    return {"image_size": S, "cache_dir": tmp_path / "cache", "progress": False}


@pytest.fixture
def people(tmp_path):
    return make_identities(tmp_path / "people")


def red_of(images: torch.Tensor) -> list[int]:
    """The identity colour of each image, read from its top-left pixel."""
    return [round((v + 1) * 127.5) for v in images[:, 0, -1, -1].tolist()]


# -- pairs -----------------------------------------------------------------------------------------


def test_pairs_are_two_different_images_of_one_training_identity(people, opts):
    src = IdentityFolder(people, **opts)
    b = src.sample_pairs(64, torch.Generator().manual_seed(0))
    assert b["pose_image"].shape == b["appearance_image"].shape == (64, 3, S, S)
    assert b["pose_image"].dtype == torch.float32
    assert b["pose_image"].min() >= -1 and b["pose_image"].max() <= 1
    assert torch.equal(b["pose_identity"], b["appearance_identity"])
    assert (b["pose_index"] != b["appearance_index"]).all()
    assert ((b["pose_image"] - b["appearance_image"]).abs().flatten(1).amax(1) > 0).all()
    assert set(b["pose_identity"].tolist()) <= set(src.split("train").tolist())
    expected = [identity_colour(("anna", "ben", "cleo").index(src.identities[i]))
                for i in b["pose_identity"]]
    assert red_of(b["pose_image"]) == expected and red_of(b["appearance_image"]) == expected


def test_same_generator_seed_gives_the_same_pairs(people, opts):
    src = IdentityFolder(people, flip=True, **opts)
    a, b, c = (src.sample_pairs(16, torch.Generator().manual_seed(s)) for s in (3, 3, 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["pose_index"], c["pose_index"])


def test_flips_are_drawn_independently_for_the_two_images(people, opts):
    plain = IdentityFolder(people, **opts)
    flipped = IdentityFolder(people, flip=True, **opts)
    a = plain.sample_pairs(200, torch.Generator().manual_seed(0))
    b = flipped.sample_pairs(200, torch.Generator().manual_seed(0))
    assert torch.equal(a["pose_index"], b["pose_index"])

    def was_flipped(key):
        same = (a[key] == b[key]).flatten(1).all(1)
        mirrored = (a[key].flip(-1) == b[key]).flatten(1).all(1)
        assert (same ^ mirrored).all()  # the marks are asymmetric, so exactly one holds
        return mirrored

    pose, appearance = was_flipped("pose_image"), was_flipped("appearance_image")
    assert 60 < int(pose.sum()) < 140 and 60 < int(appearance.sum()) < 140
    assert (pose ^ appearance).any() and (pose & appearance).any() and (~pose & ~appearance).any()


def test_fixed_examples_are_the_same_every_call_and_from_distinct_identities(tmp_path, opts):
    root = make_identities(tmp_path / "many", names=[f"id{k:02d}" for k in range(12)], per=2)
    src = IdentityFolder(root, validation_fraction=0.5, **opts)
    (a1, p1), (a2, p2) = src.fixed_examples(3), src.fixed_examples(3)
    assert a1["image"].shape == p1["image"].shape == (3, 3, S, S)
    assert torch.equal(a1["image"], a2["image"]) and torch.equal(p1["image"], p2["image"])
    test_colours = {identity_colour(int(src.identities[i][2:])) for i in src.split("test")}
    colours = red_of(a1["image"]) + red_of(p1["image"])
    assert len(set(colours)) == 6 and set(colours) <= test_colours


def test_fixed_examples_cycle_when_the_split_is_small(people, opts):
    src = IdentityFolder(people, validation_fraction=0, **opts)
    appearance, pose = src.fixed_examples(5, split="train")
    assert appearance["image"].shape == (5, 3, S, S)
    assert all(a != p for a, p in zip(red_of(appearance["image"]), red_of(pose["image"])))


def test_held_out_pairs_are_fixed_and_the_pose_image_is_the_target(people, opts):
    src = IdentityFolder(people, **opts)
    a, b = src.held_out_pairs(10, seed=5), src.held_out_pairs(10, seed=5)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["target"] is a["pose_image"] and a["appearance_image"].shape == (10, 3, S, S)
    assert (a["appearance_index"] != a["pose_index"]).all()
    assert set(a["identity"].tolist()) <= set(src.split("test").tolist())
    assert red_of(a["appearance_image"]) == red_of(a["pose_image"])


# -- image modes -----------------------------------------------------------------------------------


def test_transparency_is_composited_onto_the_background(tmp_path):
    rgba = np.zeros((S, S, 4), dtype=np.uint8)
    rgba[:4, :4] = (255, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    p = Image.new("P", (S, S), 1)
    p.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    p.paste(0, (0, 0, 4, 4))
    p.save(tmp_path / "p.png", transparency=1)
    for name, opaque in (("a.png", [1.0, -1.0, -1.0]), ("p.png", [-1.0, -1.0, -1.0])):
        x = load_image(tmp_path / name, S, background=(0, 255, 0))
        assert x[:, 0, 0].tolist() == opaque
        assert x[:, -1, -1].tolist() == [-1.0, 1.0, -1.0]


def test_grayscale_palette_16_bit_and_cmyk_become_rgb(tmp_path):
    Image.new("L", (S, S), 128).save(tmp_path / "l.png")
    Image.fromarray(np.full((S, S), 32896, dtype=np.uint16)).save(tmp_path / "i16.png")
    p = Image.new("P", (S, S), 0)
    p.putpalette([10, 20, 30] + [0] * 765)
    p.save(tmp_path / "p.gif")
    Image.new("CMYK", (S, S), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "i16.png").mode.startswith("I")
    pixel = {n: ((load_image(tmp_path / n, S)[:, 5, 5] + 1) * 127.5).round().tolist()
             for n in ("l.png", "i16.png", "p.gif", "cmyk.jpg")}
    assert pixel["l.png"] == [128] * 3
    assert pixel["i16.png"] == [128] * 3  # scaled from 16 bits, not clipped at 255
    assert pixel["p.gif"] == [10, 20, 30]
    assert pixel["cmyk.jpg"][0] > 230 and max(pixel["cmyk.jpg"][1:]) < 25


def test_exif_orientation_is_applied_before_padding(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 32 wide x 16 high, shown rotated to 16 wide x 32 high
    Image.new("RGB", (32, 16), "white").save(tmp_path / "r.jpg", exif=exif)
    x = load_image(tmp_path / "r.jpg", S)
    assert x[:, S // 2, 0].tolist() == [-1.0] * 3 and x[:, 0, S // 2].min() > 0.9


def test_pad_keeps_everything_and_crop_keeps_the_centre(tmp_path):
    a = np.zeros((16, 32, 3), dtype=np.uint8)
    a[:, :16, 0] = 255
    a[:, 16:, 2] = 255
    Image.fromarray(a).save(tmp_path / "wide.png")
    pad = load_image(tmp_path / "wide.png", S, fit="pad")
    crop = load_image(tmp_path / "wide.png", S, fit="crop")
    assert pad[:, 0, S // 2].tolist() == [-1.0] * 3  # black band above
    assert crop[:, 0, 2].tolist() == [1.0, -1.0, -1.0]
    assert crop[:, 0, -3].tolist() == [-1.0, -1.0, 1.0]


def test_a_folder_of_every_kind_of_image_loads_without_skips(tmp_path, opts):
    root = make_identities(tmp_path / "root", names=("a", "b"), per=2)
    c = root / "c"
    c.mkdir()
    Image.new("LA", (20, 10), (90, 100)).save(c / "la.png")
    Image.fromarray(np.full((9, 9), 1000, dtype=np.uint16)).save(c / "gray16.png")
    Image.new("CMYK", (12, 8)).save(c / "cmyk.jpg")
    (c / "deep").mkdir()
    Image.new("1", (7, 7), 1).save(c / "deep" / "bw.bmp")
    Image.new("RGB", (40, 20), "blue").save(c / "photo.webp")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PairDataWarning)
        src = IdentityFolder(root, validation_fraction=0, **opts)
    assert src.summary()["skipped"] == []
    assert src.images_per_identity[src.identities.index("c")] == 5


# -- bad input -------------------------------------------------------------------------------------


def test_unreadable_images_are_skipped_counted_and_named(people, opts):
    good = (people / "anna" / "img0.png").read_bytes()
    (people / "anna" / "half.png").write_bytes(good[: len(good) // 2])
    (people / "ben" / "empty.jpg").write_bytes(b"")
    (people / "ben" / "noise.png").write_bytes(os.urandom(500))
    Image.new("RGB", (64, 64), "red").save(people / "cleo" / "photo.jpg", quality=95)
    full = (people / "cleo" / "photo.jpg").read_bytes()
    (people / "cleo" / "photo.jpg").write_bytes(full[: len(full) // 2])
    (people / "cleo" / "notes.txt").write_text("not an image")
    with pytest.warns(PairDataWarning, match=r"4 file\(s\) skipped.*(half|empty|noise|photo)"):
        src = IdentityFolder(people, **opts)
    skipped = dict(src.summary()["skipped"])
    assert sorted(os.path.basename(p) for p in skipped) == ["empty.jpg", "half.png", "noise.png",
                                                            "photo.jpg"]
    assert all("not a readable image" in why for why in skipped.values())
    assert src.summary()["images"] == 12


def test_an_identity_with_one_usable_image_is_left_out_with_a_warning(people, opts):
    write_image(people / "dora" / "only.png", 3, 0)
    with pytest.warns(PairDataWarning,
                      match="left out 1 identity with a single usable image.*dora"):
        src = IdentityFolder(people, **opts)
    assert "dora" not in src.identities and src.summary()["single_image_identities"] == ["dora"]


def test_fewer_than_two_identities_is_an_error_that_explains_why(tmp_path, opts):
    root = make_identities(tmp_path / "one", names=("solo",))
    with pytest.raises(PairDataError, match="at least 2.*other appearances as negatives"):
        IdentityFolder(root, **opts)


def test_two_identities_cannot_also_give_a_validation_split(tmp_path, opts):
    root = make_identities(tmp_path / "two", names=("a", "b"))
    with pytest.raises(PairDataError, match="only 1 of 2.*validation_fraction=0"):
        IdentityFolder(root, **opts)
    src = IdentityFolder(root, validation_fraction=0, **opts)
    assert len(src.split("train")) == 2 and len(src.split("test")) == 0
    with pytest.raises(PairDataError, match="split 'test' holds no identities"):
        src.fixed_examples(2)


def test_an_empty_or_missing_root_is_an_error_naming_it(tmp_path, opts):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.md").write_text("hi")
    with pytest.raises(PairDataError, match="empty: no usable images: found no image files"):
        IdentityFolder(tmp_path / "empty", **opts)
    with pytest.raises(PairDataError, match="nowhere: no such file or folder"):
        IdentityFolder(tmp_path / "nowhere", **opts)
    with pytest.raises(PairDataError, match="nowhere: no such file or folder"):
        open_pair_source(tmp_path / "nowhere")


def test_unicode_and_spaces_in_names_work(tmp_path, opts):
    root = tmp_path / "mes données"
    write_image(root / "Zoë Ünïcode" / "photo 1 ✓.png", 0, 0)
    write_image(root / "Zoë Ünïcode" / "sub dir" / "фото 2.png", 0, 1)
    make_identities(root, names=("李", "ben"), per=2)
    src = IdentityFolder(root, validation_fraction=0, **opts)
    assert "Zoë Ünïcode" in src.identities and "李" in src.identities
    assert src.images_per_identity[src.identities.index("Zoë Ünïcode")] == 2


def test_symlink_loops_and_duplicate_links_are_harmless(people, opts):
    os.symlink(people, people / "anna" / "loop")
    os.symlink(people / "anna" / "img0.png", people / "ben" / "copy_of_anna.png")
    os.symlink(people / "nothing.png", people / "cleo" / "broken.png")
    with pytest.warns(PairDataWarning):
        src = IdentityFolder(people, **opts)
    assert src.images_per_identity.tolist() == [4, 4, 4]
    reasons = dict(src.summary()["skipped"])
    assert any("same file as one of identity 'anna'" in r for r in reasons.values())
    assert any(p.endswith("broken.png") for p in reasons)


# -- index files -----------------------------------------------------------------------------------


def write_index(path, rows, header=("identity", "path")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_index_file_reads_relative_and_absolute_paths_and_uses_duplicates_once(people, opts):
    rows = [("anna", f"people/anna/img{j}.png") for j in range(4)]
    rows += [("ben", str(people / "ben" / f"img{j}.png")) for j in range(3)]
    rows += [("ben", "people/ben/img0.png"), ("ben", "./people/ben/img0.png")]
    rows += [("Zoë", f"people/cleo/img{j}.png") for j in range(2)]
    index = write_index(people.parent / "index.csv", rows)
    src = IndexFile(index, validation_fraction=0, **opts)
    assert src.identities == ["Zoë", "anna", "ben"]
    assert src.images_per_identity.tolist() == [2, 4, 3]
    assert src.summary()["skipped"] == []


def test_index_split_column_is_honoured(people, opts):
    for k, name in ((3, "dora"), (4, "eve")):
        for j in range(2):
            write_image(people / name / f"img{j}.png", k, j)
    rows = [(n, f"people/{n}/img{j}.png", split) for n, split in
            (("anna", "train"), ("ben", "Validation"), ("cleo", "train"), ("eve", "TEST"))
            for j in range(4) if j < 2 or n != "eve"]
    rows += [("dora", "people/anna/img0.png", "val")]  # already anna's: used once, as anna's
    rows += [("dora", "people/dora/img0.png", "val"), ("dora", "people/dora/img1.png", "val")]
    index = write_index(people.parent / "split.csv", rows, ("identity", "path", "split"))
    with pytest.warns(PairDataWarning, match="img0.png \\(same file as one of identity 'anna'\\)"):
        # the column decides, not the fraction
        src = IndexFile(index, validation_fraction=0.5, **opts)

    def names(split):
        return sorted(src.identities[i] for i in src.split(split))

    assert names("train") == ["anna", "cleo"]
    assert names("validation") == ["ben", "dora"]  # "validation" and "val" both mean validation
    assert names("test") == ["eve"]
    assert src.summary()["identities"] == {"train": 2, "validation": 2, "test": 1}
    pairs = src.held_out_pairs(20, split="validation")
    assert {src.identities[i] for i in pairs["identity"].tolist()} <= {"ben", "dora"}


def test_an_index_without_validation_rows_has_an_empty_validation_split(people, opts):
    rows = [(n, f"people/{n}/img{j}.png", split) for n, split in
            (("anna", "train"), ("ben", "train"), ("cleo", "test")) for j in range(4)]
    index = write_index(people.parent / "old.csv", rows, ("identity", "path", "split"))
    src = IndexFile(index, **opts)
    assert len(src.split("train")) == 2 and len(src.split("validation")) == 0
    assert len(src.split("test")) == 1
    with pytest.raises(PairDataError,
                       match="split 'validation' holds no identities.*split column") as err:
        src.held_out_pairs(4, split="validation")
    assert "\n" not in str(err.value)


def test_index_rows_marking_too_few_identities_train_are_an_error(people, opts):
    rows = [(n, f"people/{n}/img{j}.png", split) for n, split in
            (("anna", "train"), ("ben", "val"), ("cleo", "test")) for j in range(4)]
    index = write_index(people.parent / "few.csv", rows, ("identity", "path", "split"))
    with pytest.raises(PairDataError,
                       match="only 1 of 3.*1 for test and 1 for validation.*split column"):
        IndexFile(index, **opts)


def test_index_file_errors_name_the_problem(people, opts):
    bad_header = write_index(people.parent / "h.csv", [("anna", "x.png")], ("name", "file"))
    with pytest.raises(PairDataError, match="identity,path"):
        IndexFile(bad_header, **opts)
    bad_split = write_index(people.parent / "s.csv", [("anna", "people/anna/img0.png", "dev")],
                            ("identity", "path", "split"))
    with pytest.raises(PairDataError, match=r"s\.csv:2: split 'dev'"):
        IndexFile(bad_split, **opts)
    both = write_index(people.parent / "b.csv", [("anna", "people/anna/img0.png", "train"),
                                                 ("anna", "people/anna/img1.png", "val")],
                       ("identity", "path", "split"))
    with pytest.raises(PairDataError,
                       match=r"b\.csv:3: identity 'anna' is listed in both train and validation"):
        IndexFile(both, **opts)


# -- videos ----------------------------------------------------------------------------------------


@pytest.fixture
def videos(tmp_path):
    root = tmp_path / "videos"
    write_moving_square(root / "walk.mp4")
    write_moving_square(root / "nested" / "run one.MP4")
    write_moving_square(root / "jump.mp4", frames=6)
    return root


@pytest.mark.parametrize("stride,window,frames", [
    (1, None, [6, 12, 12]), (5, None, [2, 3, 3]), (1, (0.25, 0.75), [3, 6, 6]),
    (2, (0.25, None), [2, 5, 5]),
])
def test_video_frames_follow_stride_and_time_window(videos, opts, stride, window, frames):
    src = VideoFolder(videos, frame_stride=stride, time_window=window, validation_fraction=0,
                      **opts)
    assert src.identities == ["jump.mp4", "nested/run one.MP4", "walk.mp4"]
    assert src.images_per_identity.tolist() == frames


def test_video_frames_are_every_stride_th_frame(videos, opts):
    src = VideoFolder(videos, frame_stride=5, validation_fraction=0, **opts)
    b = src.held_out_pairs(64, split="train")
    # Frame i shows the square from column 2i of 32, so from column i once resized to 16.
    left_edge = (b["pose_image"][:, 0, 3] > 0).float().argmax(1)
    seen = {name: set() for name in src.identities}
    for identity, x in zip(b["identity"].tolist(), left_edge.tolist()):
        seen[src.identities[identity]].add(x)
    assert seen == {"jump.mp4": {0, 5}, "nested/run one.MP4": {0, 5, 10}, "walk.mp4": {0, 5, 10}}


def test_an_undecodable_video_is_skipped_and_counted(videos, opts):
    (videos / "fake.mp4").write_bytes(os.urandom(2000))
    (videos / "notes.txt").write_text("ignored")
    with pytest.warns(PairDataWarning, match=r"1 file\(s\) skipped.*fake\.mp4"):
        src = VideoFolder(videos, validation_fraction=0, **opts)
    assert len(src.identities) == 3
    assert src.summary()["skipped"][0][1].startswith("not a readable video")


# -- the cache -------------------------------------------------------------------------------------


def counting_decoder(monkeypatch):
    calls = []
    real = folders.prepare_image

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(folders, "prepare_image", counted)
    return calls


def test_a_second_open_reuses_the_prepared_array(people, opts, monkeypatch):
    first = IdentityFolder(people, **opts)

    def fail(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folders, "prepare_image", fail)
    second = IdentityFolder(people, **opts)

    def g():
        return torch.Generator().manual_seed(0)

    assert torch.equal(first.sample_pairs(8, g())["pose_image"],
                       second.sample_pairs(8, g())["pose_image"])


def test_a_changed_file_or_setting_prepares_again_and_drops_the_stale_array(people, opts,
                                                                            monkeypatch):
    calls = counting_decoder(monkeypatch)
    IdentityFolder(people, **opts)
    assert len(calls) == 12
    st = os.stat(people / "ben" / "img1.png")
    os.utime(people / "ben" / "img1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    IdentityFolder(people, **opts)
    assert len(calls) == 24
    assert len(list(opts["cache_dir"].glob("*.npy"))) == 1
    IdentityFolder(people, **{**opts, "fit": "crop"})
    assert len(calls) == 36 and len(list(opts["cache_dir"].glob("*.npy"))) == 2


def test_an_interrupted_build_is_never_reused(people, opts, monkeypatch):
    real = folders.prepare_image
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5 and not interrupted.done:
            interrupted.done = True
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    interrupted.done = False
    monkeypatch.setattr(folders, "prepare_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        IdentityFolder(people, **opts)
    assert list(opts["cache_dir"].iterdir()) == []
    calls.clear()
    IdentityFolder(people, **opts)
    assert len(calls) == 12
    (json_file,) = opts["cache_dir"].glob("*.json")
    json_file.unlink()  # as if killed between writing the array and its description
    IdentityFolder(people, **opts)
    assert len(calls) == 24


def test_a_pickled_source_reopens_its_array_instead_of_copying_it(people, opts):
    import pickle

    src = IdentityFolder(people, **opts)
    state = pickle.dumps(src)
    assert len(state) < 12 * 3 * S * S
    copy = pickle.loads(state)

    def g():
        return torch.Generator().manual_seed(0)

    assert torch.equal(copy.sample_pairs(4, g())["pose_image"],
                       src.sample_pairs(4, g())["pose_image"])


# -- splits, the factory, inspection ---------------------------------------------------------------


def hash_ranked(names, salt):
    return sorted(names, key=lambda n: hashlib.sha256(f"{salt}{n}".encode()).hexdigest())


def test_split_by_identity_is_deterministic_disjoint_and_independent_of_creation_order(tmp_path,
                                                                                       opts):
    names = [f"person{k:02d}" for k in range(20)]
    a = make_identities(tmp_path / "a", names=names, per=2)
    b = make_identities(tmp_path / "b", names=names[::-1], per=2)

    def held_out(root, seed=0):
        src = IdentityFolder(root, validation_fraction=0.25, split_seed=seed, **opts)
        train, validation, test = (set(src.split(s).tolist())
                                   for s in ("train", "validation", "test"))
        assert not train & test and not train & validation and not validation & test
        assert train | validation | test == set(range(20))
        assert all(torch.equal(src.split(s), src.split(s).sort().values)
                   for s in ("train", "validation", "test"))
        return tuple(sorted(src.identities[i] for i in split) for split in (validation, test))

    validation, test = held_out(a)
    assert len(test) == 5 and len(validation) == 4  # round(20 * 0.25), then round(15 * 0.25)
    assert held_out(a) == held_out(b) == (validation, test)
    assert held_out(a, seed=1)[1] != test and held_out(a, seed=1)[0] != validation


def test_the_test_split_is_the_same_as_before_validation_existed(tmp_path, opts):
    names = [f"person{k:02d}" for k in range(20)]
    root = make_identities(tmp_path / "a", names=names, per=2)
    for seed in (0, 3):
        src = IdentityFolder(root, validation_fraction=0.25, split_seed=seed, **opts)
        test = sorted(src.identities[i] for i in src.split("test"))
        assert test == sorted(hash_ranked(names, f"{seed}/")[:5])  # the published rule, unchanged
        rest = [n for n in hash_ranked(names, f"{seed}/") if n not in test]
        validation = sorted(src.identities[i] for i in src.split("validation"))
        assert validation == sorted(hash_ranked(rest, f"validation/{seed}/")[:4])
        assert validation != sorted(rest[:4])  # its own ranking, not the test ranking continued


@pytest.mark.parametrize("k,fraction,sizes", [
    (3, 0.1, (2, 0, 1)),  # 2 outside test: too few for a validation split
    (4, 0.1, (2, 1, 1)),  # 3 outside test: at least one
    (12, 0.5, (3, 3, 6)),  # round(6 * 0.5)
    (10, 0.7, (2, 1, 7)),  # 3 outside test: train keeps 2
    (10, 0.6, (2, 2, 6)),  # round(4 * 0.6) = 2, train keeps 2
    (6, 0, (6, 0, 0)),  # nothing held out
])
def test_validation_size_follows_the_documented_rule(tmp_path, opts, k, fraction, sizes):
    root = make_identities(tmp_path / "ids", names=[f"id{i:02d}" for i in range(k)], per=2)
    src = IdentityFolder(root, validation_fraction=fraction, **opts)
    assert tuple(len(src.split(s)) for s in ("train", "validation", "test")) == sizes
    assert src.summary()["identities"] == dict(zip(("train", "validation", "test"), sizes))


def test_validation_identities_are_never_trained_on_and_give_held_out_pairs(tmp_path, opts):
    root = make_identities(tmp_path / "many", names=[f"id{k:02d}" for k in range(12)], per=3)
    src = IdentityFolder(root, validation_fraction=0.5, **opts)
    validation = set(src.split("validation").tolist())
    assert validation and not validation & set(src.split("train").tolist())
    trained = src.sample_pairs(256, torch.Generator().manual_seed(0))
    assert not set(trained["pose_identity"].tolist()) & validation
    pairs = src.held_out_pairs(32, split="validation")
    assert set(pairs["identity"].tolist()) <= validation
    assert (pairs["appearance_index"] != pairs["pose_index"]).all()
    sampled = src.sample_pairs(32, torch.Generator().manual_seed(0), split="validation")
    assert set(sampled["pose_identity"].tolist()) <= validation
    appearance, pose = src.fixed_examples(3, split="validation")
    colours = {identity_colour(int(src.identities[i][2:])) for i in validation}
    assert set(red_of(appearance["image"]) + red_of(pose["image"])) <= colours


def test_an_empty_validation_split_keeps_everything_in_train_and_says_so(people, opts):
    src = IdentityFolder(people, **opts)  # 3 identities: 1 test, 2 left, too few to hold one out
    assert len(src.split("validation")) == 0 and len(src.split("train")) == 2
    with pytest.raises(PairDataError, match="split 'validation' holds no identities.*2 identities "
                                            "are outside the test split.*at least 3") as err:
        src.held_out_pairs(4, split="validation")
    assert "\n" not in str(err.value)
    with pytest.raises(PairDataError, match="split 'validation' holds no identities"):
        src.sample_pairs(4, torch.Generator(), split="validation")


def test_an_unknown_split_name_lists_the_three(people, opts):
    src = IdentityFolder(people, **opts)
    with pytest.raises(ValueError, match="unknown split 'val'; use one of train, validation, test"):
        src.split("val")


def test_open_pair_source_tells_the_kinds_apart(people, videos, opts):
    index = write_index(people.parent / "i.csv", [(n, f"people/{n}/img0.png") for n in ("a", "b")])
    assert isinstance(open_pair_source(people, **opts), IdentityFolder)
    assert isinstance(open_pair_source(videos, validation_fraction=0, frame_stride=4, **opts),
                      VideoFolder)
    assert folders.guess_kind(index) == "index"
    with pytest.raises(PairDataError, match="frame_stride=4 applies to video folders only"):
        open_pair_source(people, frame_stride=4, **opts)
    with pytest.raises(PairDataError, match="cannot tell"):
        open_pair_source(people / "anna" / "img0.png")
    with pytest.raises(PairDataError, match="unknown pair source kind 'photos'"):
        open_pair_source(people, kind="photos")


def test_inspect_source_writes_a_contact_sheet_and_returns_the_summary(people, opts, tmp_path):
    src = IdentityFolder(people, **opts)
    summary = inspect_source(src, tmp_path / "out" / "pairs.png", pairs=5)
    with Image.open(tmp_path / "out" / "pairs.png") as im:
        assert im.size == (2 * S + 6, 5 * (S + 2) + 2)
    assert summary["identities"] == {"train": 2, "validation": 0, "test": 1}
    assert summary["images"] == 12
    assert summary["images_per_identity"] == {"min": 4, "median": 4.0, "max": 4}


def test_inspect_source_works_for_sources_without_a_summary(people, opts, tmp_path):
    src = IdentityFolder(people, **opts)

    class SheetsLike:
        def sample_pairs(self, batch_size, generator, split="train"):
            return src.sample_pairs(batch_size, generator, split)

        def split(self, name):
            return src.split(name)

    assert inspect_source(SheetsLike(), tmp_path / "s.png", pairs=2) == {
        "identities": {"train": 2, "validation": 0, "test": 1}}

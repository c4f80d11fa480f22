"""The data contracts as code: which protocols each source satisfies (and that the answers are the
``hasattr`` checks they replaced), every source error is a DataError that keeps its old base, and
one function names every cache folder."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import platformdirs
import pytest
from PIL import Image

from conftest import write_video
from rodi.cache import user_cache
from rodi.data.errors import DataError
from rodi.data.flare import FlareDataError, FlareHeroes, locate_flare
from rodi.data.folders import IdentityFolder, IndexFile, PairDataError, VideoFolder
from rodi.data.images import ImageReadError, MediaReadError
from rodi.data.mocap import MocapDataError
from rodi.data.protocols import (
    HeldOutPairSource,
    KeypointSource,
    LabelledSource,
    OrderedFramesSource,
    PairSource,
    TripletSource,
)
from rodi.data.sprites import SpritesDataError
from rodi.data.video import StillImageError, VideoReadError

PROTOCOLS = (PairSource, HeldOutPairSource, OrderedFramesSource, TripletSource, LabelledSource,
             KeypointSource)
USER_DATA = {PairSource, HeldOutPairSource, OrderedFramesSource}
RENDERED = {PairSource, TripletSource, LabelledSource}


def _old_capabilities(source) -> dict:
    """The capability checks as they were written before the protocols (report, judges, loop)."""
    return {
        "exact": hasattr(source, "triplet_indices"),  # report.evaluate_state, evaluation.validation
        "probes": hasattr(source, "appearance_attributes"),  # report.evaluate_state
        "judges": all(hasattr(source, a)
                      for a in ("render", "characters", "labels", "appearance_attributes")),
        "keypoints": hasattr(source, "keypoints"),  # judges._new_net, judges._fingerprint
        "equivalents": hasattr(source, "label_equivalents"),  # judges.target_equivalents
    }


def _new_capabilities(source) -> dict:
    return {
        "exact": isinstance(source, TripletSource),
        "probes": isinstance(source, LabelledSource),
        "judges": isinstance(source, LabelledSource),
        "keypoints": isinstance(source, KeypointSource),
        "equivalents": isinstance(source, LabelledSource),
    }


def _check(source, expected: set) -> None:
    assert {p for p in PROTOCOLS if isinstance(source, p)} == expected
    assert _new_capabilities(source) == _old_capabilities(source)


def _images(root: Path, identities: int = 3, images: int = 3, size: int = 12) -> Path:
    for i in range(identities):
        (root / f"id{i}").mkdir(parents=True)
        for j in range(images):
            a = np.full((size, size, 3), 40 * i, np.uint8)
            a[j, :] = 255
            Image.fromarray(a).save(root / f"id{i}" / f"{j}.png")
    return root


@pytest.fixture
def opts(tmp_path):
    return {"image_size": 8, "cache_dir": tmp_path / "cache", "progress": False,
            "validation_fraction": 0.0}


def test_sprites_are_a_labelled_triplet_source_without_keypoints(sheets):
    _check(sheets, RENDERED)


def test_mocap_is_a_labelled_triplet_source_with_keypoints(humanoid):
    _check(humanoid, RENDERED | {KeypointSource})


def test_flare_is_a_labelled_triplet_source_without_keypoints(tmp_path):
    try:
        root = locate_flare(download=False)
    except FlareDataError as err:
        pytest.skip(f"Flare game data not available offline: {err}")
    _check(FlareHeroes(16, root=root, cache_dir=tmp_path, progress=False), RENDERED)


def test_user_data_are_held_out_pair_sources(tmp_path, opts):
    people = _images(tmp_path / "people")
    _check(IdentityFolder(people, **opts), USER_DATA)
    index = tmp_path / "index.csv"
    index.write_text("identity,path\n" + "".join(f"id{i},people/id{i}/{j}.png\n"
                                                 for i in range(3) for j in range(3)))
    _check(IndexFile(index, **opts), USER_DATA)
    for k in range(2):
        frames = np.zeros((4, 16, 16, 3), np.uint8)
        frames[:, :, :, k] = 200
        for t in range(4):
            frames[t, 4 * t:4 * t + 4] = 255
        write_video(tmp_path / "videos" / f"v{k}.mp4", frames)
    _check(VideoFolder(tmp_path / "videos", **opts), USER_DATA)


def test_a_plain_object_satisfies_no_protocol():
    assert not any(isinstance(object(), p) for p in PROTOCOLS)


@pytest.mark.parametrize("error, builtin", [
    (SpritesDataError, RuntimeError), (MocapDataError, RuntimeError),
    (FlareDataError, RuntimeError),
    (PairDataError, ValueError), (MediaReadError, ValueError), (ImageReadError, ValueError),
    (VideoReadError, ValueError), (StillImageError, ValueError),
])
def test_every_source_error_is_a_data_error_and_keeps_its_base(error, builtin):
    assert issubclass(error, DataError) and issubclass(error, builtin)
    err = error("a.png", "broken") if issubclass(error, MediaReadError) else error("broken")
    assert "broken" in str(err)
    with pytest.raises(DataError):
        raise err


def test_data_errors_is_gone_and_data_error_is_re_exported():
    import rodi.data.sources as sources

    assert sources.DataError is DataError and not hasattr(sources, "data_errors")


def test_every_cache_folder_is_where_it_was(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    base = Path(platformdirs.user_cache_dir("rodi"))
    assert user_cache() == base
    for name in ("lpc-sprites", "mocap", "flare", "pairs", "judges"):
        assert user_cache(name) == base / name
    assert user_cache("flare", "fantasycore") == base / "flare" / "fantasycore"
    assert base == tmp_path / "rodi"  # read at every call, as before


def test_rodi_cache_imports_nothing_of_rodi_and_the_sources_import_without_a_cycle():
    code = ("import sys; import rodi.cache; "
            "print(sorted(m for m in sys.modules if m.startswith('rodi')));"
            "import rodi.data.sprites, rodi.data.sources")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    # the package root holds only the version string
    assert out.strip() == "['rodi', 'rodi.cache', 'rodi.version']"

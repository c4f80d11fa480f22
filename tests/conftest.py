import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


LPC_SHEETS_ABSENT = (
    "the real LPC layer sheets are absent: set RODI_SPRITES_ROOT to a folder of them "
    "(body/0.png ... hair/9.png, as published in github.com/YingzhenLi/Sprites) or put them at "
    "../shared/data/lpc-sprites beside the clone"
)
_SESSION: dict[str, Path] = {}  # the sheets the session's tests use, set by the sheets_root fixture


def real_sprites_root() -> Path | None:
    """The real LPC layer sheets: $RODI_SPRITES_ROOT, else ../shared/data/lpc-sprites beside the
    clone, else None.

    Raises:
        SpritesDataError: $RODI_SPRITES_ROOT is set but is not a complete folder of sheets (asked
            for the real ones, the tests do not quietly fall back to synthetic ones).
    """
    from rodi.data.sprites import ENV_ROOT, SpritesDataError, locate_sheets

    env = os.environ.get(ENV_ROOT)
    if env:
        return locate_sheets(env, download=False)
    try:
        return locate_sheets(REPO.parent / "shared" / "data" / "lpc-sprites", download=False)
    except SpritesDataError:
        return None


def sprites_root() -> Path:
    """The layer sheets this session's Sprites tests use (see the ``sheets_root`` fixture), for code
    that cannot ask for a fixture, such as :func:`tiny_overrides`."""
    if "sprites_root" not in _SESSION:
        raise RuntimeError("sprites_root() is only known once the session fixture sheets_root "
                           "has run")
    return _SESSION["sprites_root"]


def pytest_report_header(config) -> str:
    """Say in the session header which layer sheets the Sprites tests use."""
    try:
        root = real_sprites_root()
    except Exception as err:  # a bad $RODI_SPRITES_ROOT: the fixture reports it where it is used
        return f"sprites: {err}"
    return f"sprites: the real LPC layer sheets at {root}" if root else (
        f"sprites: synthetic layer sheets ({LPC_SHEETS_ABSENT})")


@pytest.fixture(scope="session")
def synthetic_sheets_root(tmp_path_factory) -> Path:
    """Procedurally drawn stand-ins for the LPC layer sheets (see ``synthetic_sheets.py``), in the
    loader's layout, written once per session into a temporary folder."""
    from synthetic_sheets import write_synthetic_sheets

    return write_synthetic_sheets(tmp_path_factory.mktemp("synthetic-lpc-sprites"))


@pytest.fixture(scope="session")
def real_sheets_root() -> Path:
    """The real LPC layer sheets, for the few tests of the art itself; skips the test where
    absent."""
    root = real_sprites_root()
    if root is None:
        pytest.skip(LPC_SHEETS_ABSENT)
    return root


@pytest.fixture(scope="session", autouse=True)
def sheets_root(request) -> Path:
    """The layer sheets for every test that needs Sprites: the real ones where present, else the
    synthetic ones. Autouse, so that :func:`sprites_root` (and so :func:`tiny_overrides`) knows them
    in every test and fixture."""
    root = real_sprites_root() or request.getfixturevalue("synthetic_sheets_root")
    _SESSION["sprites_root"] = root
    return root


@pytest.fixture(scope="session")
def sheets(sheets_root):
    """The ``sprites`` protocol composed from this session's layer sheets."""
    from rodi.data.sprites import SpriteSheets

    return SpriteSheets("sprites", sheets_root)


@pytest.fixture(scope="session")
def humanoid(tmp_path_factory):
    """A small mocap source (every 40th frame, 2 camera yaws, 64 px) rendered once per test
    session."""
    from rodi.data.mocap import MocapHumanoid

    return MocapHumanoid(64, frame_stride=40, yaws=2, cache_dir=tmp_path_factory.mktemp("mocap"),
                         progress=False)


def tiny_overrides(tmp_path, **extra) -> list[str]:
    """A config small enough for a few CPU steps in a test, on this session's layer sheets (the real
    ones where present, else the synthetic ones: see the ``sheets_root`` fixture)."""
    values = {
        "data.root": str(sprites_root()),
        "data.num_triplets": 16,
        "model.channels": 8,
        "model.max_channels": 16,
        "model.code_channels": 4,
        "objective.critic_width": 16,
        "objective.warmup_steps": 1,
        "train.batch_size": 3,
        "train.max_steps": 4,
        "train.log_every": 2,
        "train.image_every": 2,
        "train.checkpoint_every": 2,
        "train.matrix_size": 2,
        "train.out_dir": str(tmp_path / "run"),
        "evaluation.probe_train_codes": 40,
        "evaluation.probe_test_codes": 20,
        "evaluation.probe_steps": 5,
        "evaluation.mi_pairs": 16,
        "evaluation.mi_steps": 5,
        "evaluation.judge_steps": 3,
        "evaluation.judge_batch_size": 4,
        "evaluation.keypoint_pairs": 8,  # where rodi[keypoints] is installed
        "data.cache_dir": str(tmp_path / "cache"),
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def write_video(path, frames, rate=12, codec="mpeg4", pix_fmt="yuv420p") -> None:
    """Write (N, H, W, 3) uint8 frames as a video at ``rate`` frames per second (container from the
    suffix; ``codec="ffv1", pix_fmt="bgr0"`` in .mkv is lossless)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained checkpoint of the tiny test config (Sprites, 64 x 64): written in a fraction of
    a second, for tests of what is done with a model rather than of what it learnt."""
    import torch

    from rodi.config import load_config
    from rodi.training.state import TrainState

    tmp = tmp_path_factory.mktemp("tiny-checkpoint")
    torch.manual_seed(0)
    return TrainState(load_config("sprites", tiny_overrides(tmp)),
                      torch.device("cpu")).save(tmp / "tiny.pt")

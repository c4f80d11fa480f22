import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def sprites_root() -> Path:
    """The LPC layer sheets: $RODI_SPRITES_ROOT, else ../shared/data/lpc-sprites beside the clone."""
    env = os.environ.get("RODI_SPRITES_ROOT")
    root = Path(env) if env else REPO.parent / "shared" / "data" / "lpc-sprites"
    if not (root / "body" / "0.png").is_file():
        raise RuntimeError(f"tests need the LPC layer sheets; none at {root}: set RODI_SPRITES_ROOT")
    return root


@pytest.fixture(scope="session")
def sheets_root() -> Path:
    return sprites_root()


@pytest.fixture(scope="session")
def sheets(sheets_root):
    from rodi.data.sprites import SpriteSheets

    return SpriteSheets("sprites", sheets_root)


@pytest.fixture(scope="session")
def humanoid(tmp_path_factory):
    """A small mocap source (every 40th frame, 2 camera yaws, 64 px) rendered once per test session."""
    from rodi.data.mocap import MocapHumanoid

    return MocapHumanoid(64, frame_stride=40, yaws=2, cache_dir=tmp_path_factory.mktemp("mocap"), progress=False)


def tiny_overrides(tmp_path, **extra) -> list[str]:
    """A config small enough for a few CPU steps in a test."""
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
    """An untrained checkpoint of the tiny test config (Sprites, 64 x 64): written in a fraction of a
    second, for tests of what is done with a model rather than of what it learnt."""
    import torch

    from rodi.config import load_config
    from rodi.training.state import TrainState

    tmp = tmp_path_factory.mktemp("tiny-checkpoint")
    torch.manual_seed(0)
    return TrainState(load_config("sprites", tiny_overrides(tmp)), torch.device("cpu")).save(tmp / "tiny.pt")

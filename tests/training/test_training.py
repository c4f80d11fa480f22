import pytest
import torch

from conftest import tiny_overrides
from rodi.config import VARIANTS, load_config
from rodi.training.loop import RunExistsError, checkpoint_path, train
from rodi.training.state import CheckpointError, TrainState, read_checkpoint


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_trains_a_few_steps(tmp_path, variant):
    cfg = load_config("sprites", tiny_overrides(tmp_path, **{"objective.variant": variant}))
    run = train(cfg, progress=False)
    state = TrainState.from_checkpoint(checkpoint_path(run))
    assert state.step == 4
    assert ((run / "transfer_matrix.png").is_file()
            and (run / "transfer" / "step-0000002.png").is_file())
    rows = (run / "scalars.csv").read_text().splitlines()
    assert rows[0].startswith("step,train_seconds,reconstruction,kl,gamma,lambda,mi,mi_independent")
    assert len(rows) == 3
    gamma = state.objective.gamma.item()
    if variant in ("ae", "drnet"):
        assert gamma == 0.0
    elif variant in ("variational", "adversarial"):
        assert gamma == 1.0
    else:
        assert gamma != 1.0  # adapted every step
    if variant in ("ae", "variational", "drnet"):
        assert state.objective.multiplier.item() == 0.0
    assert ("scene_discriminator" in state.optimizers) == (variant == "drnet")


def _params(state: TrainState) -> dict:
    return {**{f"m.{k}": v for k, v in state.model.state_dict().items()},
            **{f"o.{k}": v for k, v in state.objective.state_dict().items()}}


@pytest.mark.parametrize("precision", ["32", "bf16"])
def test_resume_continues_exactly(tmp_path, precision):
    p = {"train.precision": precision}
    straight = train(load_config("sprites", tiny_overrides(tmp_path / "a",
                                                           **{"train.max_steps": 6}, **p)),
                     progress=False)
    first = load_config("sprites", tiny_overrides(tmp_path / "b", **{"train.max_steps": 3}, **p))
    train(first, progress=False)
    resumed = train(load_config("sprites", tiny_overrides(tmp_path / "b",
                                                          **{"train.max_steps": 6}, **p)),
                    resume=True, progress=False)
    a = TrainState.from_checkpoint(checkpoint_path(straight))
    b = TrainState.from_checkpoint(checkpoint_path(resumed))
    assert a.step == b.step == 6
    pa, pb = _params(a), _params(b)
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    oa = a.optimizers["critic"].state_dict()["state"]
    ob = b.optimizers["critic"].state_dict()["state"]
    for k in oa:
        assert torch.equal(oa[k]["exp_avg_sq"], ob[k]["exp_avg_sq"])
    assert torch.equal(a.data_generator.get_state(), b.data_generator.get_state())
    steps = [int(r.split(",")[0]) for r in (resumed / "scalars.csv").read_text().splitlines()[1:]]
    assert steps == [2, 4, 6]


def test_checkpoint_round_trip_holds_every_part(tmp_path):
    cfg = load_config("sprites", tiny_overrides(tmp_path))
    run = train(cfg, progress=False)
    raw = read_checkpoint(checkpoint_path(run))
    assert set(raw) >= {"format_version", "config", "step", "model", "objective", "optimizers",
                        "rng", "train_seconds"}
    assert set(raw["optimizers"]) == {"model", "critic", "independent_critic"}
    assert {"gamma", "multiplier", "ema_mi", "ema_mi_independent"} <= {k for k in raw["objective"]}
    state = TrainState.from_checkpoint(checkpoint_path(run))
    again = tmp_path / "again.pt"
    state.save(again)
    reread = TrainState.from_checkpoint(again)
    for k, v in _params(state).items():
        assert torch.equal(v, _params(reread)[k])


def test_a_fresh_run_never_overwrites_an_existing_one(tmp_path):
    cfg = load_config("sprites", tiny_overrides(tmp_path, **{"train.max_steps": 2}))
    train(cfg, progress=False)
    with pytest.raises(RunExistsError, match="--resume"):
        train(cfg, progress=False)


def test_checkpoint_of_another_model_is_refused_with_the_differing_keys(tmp_path):
    cfg = load_config("sprites", tiny_overrides(tmp_path, **{"train.max_steps": 2}))
    run = train(cfg, progress=False)
    other = load_config("sprites", tiny_overrides(tmp_path, **{"model.channels": 4}))
    with pytest.raises(CheckpointError, match="model.channels"):
        TrainState.from_checkpoint(checkpoint_path(run), cfg=other)


def test_unreadable_and_foreign_checkpoints_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a rodi checkpoint"):
        read_checkpoint(bad)
    torch.save({"format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        read_checkpoint(tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")  # a torch file, not rodi's
    with pytest.raises(CheckpointError, match="other.pt is not a rodi training checkpoint$"):
        read_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_checkpoint_is_a_one_line_error(tmp_path, keep):
    """A file cut mid-write (copied while written, or a full disk) names the file and says it is
    truncated or corrupt, on one line, without torch's paragraph of advice."""
    whole = tmp_path / "whole.pt"
    torch.save({"format_version": 1, "weights": torch.zeros(1000)}, whole)
    data = whole.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="cut.pt is not a readable rodi checkpoint "
                                              r"\(truncated or corrupt: ") as err:
        read_checkpoint(cut)
    assert "\n" not in str(err.value) and "miniz" not in str(err.value)


def test_progress_bar_in_a_log_file_updates_once_a_minute(tmp_path):
    """Under pytest stderr is not a terminal, as in a log: the bar redraws at most once a minute
    (a terminal gets the usual tenth of a second)."""
    from types import SimpleNamespace

    from rodi.training.loop import _progress_bar

    cfg = load_config("demo", tiny_overrides(tmp_path))
    bar = _progress_bar(cfg, SimpleNamespace(train_seconds=0.0, step=0), progress=True)
    try:
        assert bar.mininterval == 60.0
    finally:
        bar.close()

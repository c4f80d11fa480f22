"""The moving average of the weights (``train.ema_decay``): updated after every step, saved and
resumed with the run, and what validation, evaluation, transfers and exports use."""

import torch

from conftest import tiny_overrides
from rodi.config import load_config
from rodi.inference import export_model, load_model
from rodi.training.loop import checkpoint_path, train
from rodi.training.state import TrainState, read_checkpoint
from rodi.training.step import train_step, wrap_step


def _batch(size: int = 64) -> dict:
    g = torch.Generator().manual_seed(0)
    return {k: torch.rand(3, 3, size, size, generator=g) * 2 - 1
            for k in ("pose_image", "appearance_image")}


def test_the_average_moves_by_one_minus_the_decay_toward_the_new_weights(tmp_path):
    cfg = load_config("sprites", tiny_overrides(tmp_path, **{"train.ema_decay": 0.75}))
    state = TrainState(cfg, torch.device("cpu"))
    losses = wrap_step(state.model, state.objective, state.objective.distributed, state.device)

    def weights(module) -> dict:
        return {k: v.clone() for k, v in module.state_dict().items()}

    train_step(state, losses, _batch())
    first = weights(state.model)  # torch's AveragedModel starts from the first update's weights
    assert all(torch.equal(first[k], v) for k, v in weights(state.eval_model).items())
    train_step(state, losses, _batch())
    second, average = weights(state.model), weights(state.eval_model)
    assert any(not torch.equal(first[k], second[k]) for k in second)
    for k, v in average.items():
        assert torch.allclose(v, 0.75 * first[k] + 0.25 * second[k], atol=1e-7), k


def test_without_a_decay_there_is_no_average_and_the_checkpoint_is_as_before(tmp_path):
    cfg = load_config("sprites", tiny_overrides(tmp_path))
    state = TrainState(cfg, torch.device("cpu"))
    assert state.ema is None and state.eval_model is state.model
    assert "ema" not in state.state_dict()


def test_the_average_is_saved_resumed_loaded_and_exported(tmp_path):
    def cfg(folder: str, steps: int):
        return load_config("sprites", tiny_overrides(tmp_path / folder, **{
            "train.ema_decay": 0.9, "train.max_steps": steps}))

    straight = train(cfg("a", 6), progress=False)
    train(cfg("b", 4), progress=False)
    resumed = train(cfg("b", 6), resume=True, progress=False)
    a, b = read_checkpoint(checkpoint_path(straight)), read_checkpoint(checkpoint_path(resumed))
    assert a["ema"].keys() == b["ema"].keys()
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
    average = {k.removeprefix("module."): v for k, v in a["ema"].items() if k.startswith("module.")}
    assert not all(torch.equal(a["model"][k], v) for k, v in average.items())
    model, _ = load_model(checkpoint_path(straight))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in average.items())
    exported, _ = load_model(export_model(checkpoint_path(straight), tmp_path / "m.safetensors"))
    assert all(torch.equal(exported.state_dict()[k], v) for k, v in average.items())

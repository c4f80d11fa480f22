"""Checkpoints and exports written by rodi 0.1.0, before the refactor that moved the objective's
DRNET terms, the inference code and the distribution primitives (tests/fixtures/v0.1.0/README.md),
still load, render what that code rendered and resume training."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from rodi.inference import load_model
from rodi.training.state import TrainState, read_checkpoint
from rodi.training.step import train_step, wrap_step

OLD = Path(__file__).resolve().parent.parent / "fixtures" / "v0.1.0"


def test_a_checkpoint_and_an_export_of_0_1_0_render_what_0_1_0_rendered():
    expected = load_file(str(OLD / "transfers.safetensors"))
    for name, file in (("checkpoint", "drnet-tiny.pt"), ("export", "drnet-tiny.safetensors")):
        model, cfg = load_model(OLD / file)
        assert cfg.objective.variant == "drnet"
        # equal up to float rounding: the thread count of earlier tests may change the sums' order
        rendered = model.transfer(expected["appearance"], expected["pose"])
        assert torch.allclose(rendered, expected[name], rtol=0, atol=1e-5), name


def test_a_0_1_0_checkpoint_resumes_with_every_state_in_place():
    state = TrainState.from_checkpoint(OLD / "drnet-tiny.pt", torch.device("cpu"))
    saved = read_checkpoint(OLD / "drnet-tiny.pt")
    assert state.step == 3
    assert set(state.objective.critics()) == {"critic", "independent_critic", "scene_discriminator"}
    for key, value in saved["objective"].items():  # the scene discriminator's weights among them
        assert torch.equal(state.objective.state_dict()[key], value), key
    g = torch.Generator().manual_seed(0)
    batch = {k: torch.rand(4, 3, 16, 16, generator=g) * 2 - 1
             for k in ("pose_image", "appearance_image")}
    before = state.objective.scene_discriminator.net[0].weight.clone()
    out = train_step(state, wrap_step(state.model, state.objective, state.objective.distributed,
                                      state.device), batch)
    assert (torch.isfinite(out["model_loss"])
            and not torch.equal(before, state.objective.scene_discriminator.net[0].weight))

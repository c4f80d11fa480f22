"""Run by tests/training/test_distributed.py under torchrun: train, then dump this process's
networks and the method's global quantities to OUT/rank<RANK>.pt."""

import os
import sys

import torch

from rodi.config import load_config
from rodi.training.loop import train
from rodi.training.state import TrainState


def main() -> None:
    out, overrides = sys.argv[1], sys.argv[2:]
    cfg = load_config("sprites", overrides)
    captured = {}
    original = TrainState.__init__

    def keep(self, *args, **kwargs):  # hold on to the state the loop builds
        original(self, *args, **kwargs)
        captured["state"] = self

    TrainState.__init__ = keep
    train(cfg, progress=False)
    state = captured["state"]
    torch.save({"model": state.model.state_dict(), "objective": state.objective.state_dict(),
                "step": state.step}, os.path.join(out, f"rank{os.environ['RANK']}.pt"))


if __name__ == "__main__":
    main()

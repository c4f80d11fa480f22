"""Everything a run is: networks, objective (critics, lambda, gamma, moving averages), optimisers,
schedule, step, wall-clock time, RNG states and the resolved config. Saving and resuming go through
:class:`TrainState` only.

Checkpoints are ``torch.save`` dicts of tensors and plain Python values, written atomically
(temporary file, fsync, rename) and read with ``torch.load(weights_only=True)``, so loading one
never runs code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from rodi.atomic import replacing
from rodi.config import Config, from_dict, to_dict
from rodi.distributed import resolve_device
from rodi.models.networks import build_model
from rodi.objectives.disentangling import DisentanglingObjective
from rodi.version import __version__

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, of another format version or of another config."""


class RunExistsError(RuntimeError):
    """A fresh run was asked for in a folder that already holds one."""


class TrainState:
    """The one owner of a run's state.

    Args:
        cfg: the resolved config.
        device: where networks and optimiser states live.
    """

    def __init__(self, cfg: Config, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.model = build_model(cfg).to(device)
        # the average starts as a copy of the initial weights (before any compiling)
        self.ema = None
        if cfg.train.ema_decay > 0:
            self.ema = AveragedModel(self.model, use_buffers=True,
                                     multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay))
        if cfg.train.compile:  # in place: parameter names and checkpoints stay the same
            for part in (self.model.pose_encoder, self.model.appearance_encoder,
                         self.model.decoder):
                part.compile()
        self.objective = DisentanglingObjective(cfg.objective, cfg.model.code_channels,
                                                cfg.model.code_size, cfg.model).to(device)
        o = cfg.optim

        def adam(params, lr: float) -> torch.optim.Adam:
            return torch.optim.Adam(params, lr=lr, betas=tuple(o.betas))

        self.optimizers = {"model": adam(self.model.parameters(), o.lr)}
        for name, critic in self.objective.critics().items():
            self.optimizers[name] = adam(critic.parameters(), o.lr * o.critic_lr_factor)
        self.base_lrs = {k: opt.param_groups[0]["lr"] for k, opt in self.optimizers.items()}
        self.step = 0
        self.train_seconds = 0.0
        self.data_generator = torch.Generator().manual_seed(cfg.train.seed + 1)

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "data": self.data_generator.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format_version": FORMAT_VERSION,
            "rodi_version": __version__,
            "config": to_dict(self.cfg),
            "step": self.step,
            "train_seconds": self.train_seconds,
            "model": self.model.state_dict(),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            "objective": self.objective.state_dict(),
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "rng": rng,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state from :meth:`state_dict` (of a run with the same model and objective).

        Raises:
            CheckpointError: the networks or optimisers do not match this config.
        """
        try:
            self.model.load_state_dict(state["model"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            self.objective.load_state_dict(state["objective"])
            for k, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][k])
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(f"checkpoint does not fit this config: {err}") from err
        self.step = int(state["step"])
        self.train_seconds = float(state["train_seconds"])
        torch.set_rng_state(state["rng"]["torch"])
        self.data_generator.set_state(state["rng"]["data"])
        if "cuda" in state["rng"] and torch.cuda.is_available() and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    @property
    def eval_model(self) -> torch.nn.Module:
        """The networks that validation, evaluation and transfers use: the moving average of the
        weights where ``train.ema_decay`` keeps one, else the trained weights themselves."""
        return self.ema.module if self.ema is not None else self.model

    def progress(self) -> float:
        """Fraction of the training budget used: the larger of steps and wall-clock, in [0, 1]."""
        t = self.cfg.train
        done = self.step / t.max_steps
        if t.max_minutes:
            done = max(done, self.train_seconds / (60 * t.max_minutes))
        return min(done, 1.0)

    def apply_schedule(self) -> float:
        """Set every optimiser's learning rate for the current progress (``optim.schedule``:
        constant, or linear decay to 0 at the end of the budget); returns the model's rate."""
        factor = 1.0 - self.progress() if self.cfg.optim.schedule == "linear" else 1.0
        for k, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = self.base_lrs[k] * factor
        return self.base_lrs["model"] * factor

    def save(self, path: str | os.PathLike) -> Path:
        """Write the state atomically to ``path``: a reader sees the old file or the new one, never
        a partial one."""
        return atomic_save(self.state_dict(), path)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: torch.device | None = None,
                        cfg: Config | None = None) -> "TrainState":
        """Rebuild a run from a checkpoint on ``device`` (default: the saved config's choice,
        falling back to what this machine has).

        Raises:
            CheckpointError: unreadable file, other format version, or networks that differ from
                ``cfg`` (when given).
        """
        state = read_checkpoint(path)
        saved = from_dict(state["config"])
        if cfg is not None:
            differing = _differing_keys(to_dict(saved), to_dict(cfg),
                                        sections=("model", "objective"))
            if differing:
                raise CheckpointError(f"{path} was trained with another model or objective; keys "
                                      f"that differ: {', '.join(differing)}")
        cfg = cfg or saved
        if device is None:
            device = resolve_device("auto" if cfg.train.device.startswith("cuda")
                                    else cfg.train.device)
        ts = cls(cfg, device)
        ts.load_state_dict(state)
        return ts


def _differing_keys(a: dict, b: dict, sections: tuple[str, ...]) -> list[str]:
    return [f"{s}.{k}" for s in sections for k in sorted(set(a[s]) | set(b[s]))
            if a[s].get(k) != b[s].get(k)]


def atomic_save(obj: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    with replacing(path, durable=True) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint onto the CPU with ``weights_only=True`` and check its format version.

    Raises:
        CheckpointError: missing or unreadable file, or another format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} is not a rodi checkpoint: it is not a torch.save file, or "
                              "it holds objects other than tensors and plain data, which rodi "
                              "refuses to unpickle") from None
    except Exception as err:  # torch raises several types for truncated or foreign files
        # torch's first sentence only: its zip reader appends a paragraph of advice
        first = str(err).splitlines()[0].split(". ")[0] if str(err) else ""
        if isinstance(err, (KeyError, EOFError)) or not first:
            detail = "not a file written by torch.save"
        elif type(err) is OSError or "zip archive" in first:  # not PermissionError and kin
            detail = f"truncated or corrupt: {first}"
        else:
            detail = f"{type(err).__name__}: {first}"
        raise CheckpointError(f"{path} is not a readable rodi checkpoint ({detail})") from None
    version = state.get("format_version") if isinstance(state, dict) else None
    if version is None:
        hint = (" (an exported model: `rodi transfer` and `rodi serve` read it; training, resuming "
                "and evaluating need the run's .pt checkpoint)" if path.suffix == ".safetensors"
                else "")
        raise CheckpointError(f"{path} is not a rodi training checkpoint{hint}")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; this rodi "
                              f"({__version__}) reads version {FORMAT_VERSION}")
    return state

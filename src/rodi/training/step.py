"""One training step: the objective's losses, one backward, every optimiser, then lambda, gamma and
the moving averages (docs/method.md section 3). The training loop and
``benchmarks/throughput.py`` both call :func:`train_step`.
"""

from __future__ import annotations

import torch
from torch.nn.parallel import DistributedDataParallel

from rodi.distributed import SINGLE, Distributed, uses_bf16
from rodi.training.state import TrainState

RESUME_HINT = ("the last good checkpoint is kept; resume it with `rodi train --resume RUN_DIR`, "
               "for instance with a lower learning rate: "
               "`rodi train --resume RUN_DIR optim.lr=1e-4`")


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the message names the term and the step."""


class TrainingStep(torch.nn.Module):
    """The networks and the objective as one module whose ``forward(batch, step)`` is one training
    step's losses (:meth:`rodi.objectives.disentangling.DisentanglingObjective.forward`), so that
    DistributedDataParallel sees every parameter that any optimiser steps."""

    def __init__(self, model: torch.nn.Module, objective: torch.nn.Module):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, batch: dict, step: int) -> dict:
        """The objective's losses for ``batch`` (``pose_image``, ``appearance_image``: (B, 3, H, W)
        in [-1, 1]) at training ``step``; see the objective's ``forward`` for the keys and
        errors."""
        return self.objective(self.model, batch, step)


def wrap_step(model: torch.nn.Module, objective: torch.nn.Module, distributed: Distributed,
              device: torch.device) -> torch.nn.Module:
    """A callable ``(batch, step) -> losses``: :class:`TrainingStep`, wrapped in
    DistributedDataParallel when ``distributed`` spans several processes.

    The wrapper does not broadcast buffers: gamma, lambda and the moving averages are computed
    identically on every process from global numbers. Every variant gives every parameter a
    gradient at every step (the critics train on detached codes even where no constraint uses
    them), so DDP needs no search for unused parameters.
    """
    step = TrainingStep(model, objective)
    if not distributed.enabled:
        return step
    return DistributedDataParallel(step,
                                   device_ids=[device.index] if device.type == "cuda" else None,
                                   broadcast_buffers=False)


def train_step(state: TrainState, losses: torch.nn.Module, batch: dict,
               distributed: Distributed = SINGLE) -> dict:
    """One step of every network at ``state.step``: losses (under bf16 autocast where
    ``train.precision`` asks for it, :func:`rodi.distributed.uses_bf16`), one backward of
    ``model_loss + critic_loss``, every optimiser step, then the objective's update of lambda,
    gamma and the moving averages, and the update of the weights' moving average where there is
    one. Does not advance ``state.step``.

    Args:
        state: the run; its learning rates must already be set for this step.
        losses: :func:`wrap_step`'s callable for ``state``'s networks and objective.
        batch: this process's ``pose_image`` and ``appearance_image``, (B, 3, H, W) in [-1, 1] on
            ``state.device``.
        distributed: the process group, so that a non-finite term on one process stops all.

    Returns:
        The objective's outputs (see its ``forward``).

    Raises:
        NonFiniteLossError: a loss term or a gradient is NaN or infinite (before any optimiser
            steps, so the state is that of the last good step).
    """
    device = state.device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=uses_bf16(state.cfg.train.precision, device))
    with autocast:
        out = losses(batch, state.step)
    check_finite(out, state.step, distributed, device)
    for opt in state.optimizers.values():
        opt.zero_grad(set_to_none=True)
    # DDP averages gradients over processes here
    (out["model_loss"] + out["critic_loss"]).backward()
    check_finite_gradients(state, state.step)
    for opt in state.optimizers.values():
        opt.step()
    state.objective.update(out, state.step)
    if state.ema is not None:
        state.ema.update_parameters(state.model)
    return out


def check_finite(out: dict, step: int, distributed: Distributed = SINGLE,
                 device: torch.device | None = None) -> None:
    """Raise :class:`NonFiniteLossError` naming the first NaN or infinite loss term; under torchrun
    every process raises at the same step (one process's bad term stops all, none waits in an
    all-reduce the others never join)."""
    bad = next((name for name in ("reconstruction", "kl", "penalty", "critic_loss")
                if not torch.isfinite(out[name])), None)
    if distributed.enabled and distributed.any(bad is not None, device) and bad is None:
        raise NonFiniteLossError(f"a loss term is not finite on another process at step {step}; "
                                 f"{RESUME_HINT}")
    if bad is not None:
        raise NonFiniteLossError(f"loss term {bad!r} is {out[bad].item()} at step {step}; "
                                 f"{RESUME_HINT}")


def check_finite_gradients(state: TrainState, step: int) -> None:
    """Raise :class:`NonFiniteLossError` before any optimiser steps when a gradient holds NaN or
    inf, naming the network."""
    for name, opt in state.optimizers.items():
        grads = [p.grad for group in opt.param_groups for p in group["params"]
                 if p.grad is not None]
        if grads and not torch.isfinite(torch.stack(torch._foreach_norm(grads))).all():
            raise NonFiniteLossError(f"the gradient of the {name} parameters is not finite at "
                                     f"step {step}; {RESUME_HINT}")

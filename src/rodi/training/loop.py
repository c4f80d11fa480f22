"""The training loop: sample pairs, one step of model and critics, update the method's global
quantities, log, draw, checkpoint. Ctrl-C saves a checkpoint before leaving."""

from __future__ import annotations

import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

from rodi.config import Config, to_yaml
from rodi.data.sources import open_source
from rodi.training.logging import ScalarLogger
from rodi.training.state import TrainState, resolve_device
from rodi.viz import save_transfer_matrix


class RunExistsError(RuntimeError):
    """A fresh run was asked for in a folder that already holds one."""


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the message names the term and the step."""


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints" / "last.pt"


def _check_finite(out: dict, step: int) -> None:
    for name in ("reconstruction", "kl", "penalty", "critic_loss"):
        if not torch.isfinite(out[name]):
            raise NonFiniteLossError(
                f"loss term {name!r} is {out[name].item()} at step {step}; the last checkpoint is kept. "
                "Resume it with --resume, for instance with a lower optim.lr"
            )


def train(cfg: Config, resume: bool = False, progress: bool = True) -> Path:
    """Train (or resume) the run of ``cfg`` in ``cfg.train.out_dir``.

    Ctrl-C (SIGINT) ends the current step, saves a checkpoint and raises KeyboardInterrupt.

    The run folder holds ``config.yaml``, ``checkpoints/last.pt``, ``scalars.csv``,
    ``tensorboard/`` and ``transfer/step-XXXXXXX.png``.

    Args:
        cfg: resolved config; with ``resume`` it must match the checkpoint's model and objective.
        resume: continue from ``out_dir/checkpoints/last.pt`` exactly where it stopped.
        progress: show a progress bar.

    Returns:
        The run folder.

    Raises:
        RunExistsError: a fresh run in a folder that has a checkpoint.
        CheckpointError: ``resume`` without a readable, matching checkpoint.
        NonFiniteLossError: a loss term became non-finite.
    """
    run_dir = Path(cfg.train.out_dir)
    ckpt = checkpoint_path(run_dir)
    if not resume and ckpt.exists():
        raise RunExistsError(f"{run_dir} already holds a run ({ckpt}); continue it with --resume or "
                             "choose another train.out_dir")
    device = resolve_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    source = open_source(cfg.data, cfg.model.image_size, progress)

    if resume:
        state = TrainState.from_checkpoint(ckpt, device, cfg)
    else:
        torch.manual_seed(cfg.train.seed)  # network initialisation depends on the seed only
        state = TrainState(cfg, device)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    logger = ScalarLogger(run_dir, resume_step=state.step if resume else None)
    appearance, pose = source.fixed_examples(cfg.train.matrix_size)

    budget = cfg.train.max_minutes * 60 if cfg.train.max_minutes else None
    bar = tqdm(total=round(budget) if budget else cfg.train.max_steps, disable=not progress,
               unit="step", dynamic_ncols=True,
               bar_format=("{l_bar}{bar}| {n_fmt}/{total_fmt} s of budget [{elapsed}<{remaining}{postfix}]"
                           if budget else None),
               initial=min(round(state.train_seconds), round(budget)) if budget else state.step)
    sums: dict[str, float] = defaultdict(float)
    count, compute_seconds = 0, 0.0
    model, objective = state.model, state.objective
    b = cfg.train.batch_size
    interrupted = []
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:  # signal handlers can only be installed there
        previous_handler = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    try:
        while (state.step < cfg.train.max_steps and (budget is None or state.train_seconds < budget)
               and not interrupted):
            started = time.perf_counter()
            batch = source.sample_pairs(b, state.data_generator)
            batch = {k: batch[k].to(device, non_blocking=True) for k in ("pose_image", "appearance_image")}
            state.apply_schedule()
            out = objective(model, batch, state.step)
            _check_finite(out, state.step)
            for opt in state.optimizers.values():
                opt.zero_grad(set_to_none=True)
            (out["model_loss"] + out["critic_loss"]).backward()
            for opt in state.optimizers.values():
                opt.step()
            objective.update(out, state.step)
            state.step += 1
            step_seconds = time.perf_counter() - started
            compute_seconds += step_seconds
            count += 1
            for k in ("reconstruction", "kl", "mi", "mi_independent", "critic_accuracy",
                      "independent_critic_accuracy", "penalty"):
                sums[k] += out[k].item()

            if state.step % cfg.train.log_every == 0:
                values = {k: v / count for k, v in sums.items()}
                values.update(gamma=objective.gamma.item(), **{"lambda": objective.multiplier.item()},
                              lr=state.optimizers["model"].param_groups[0]["lr"],
                              images_per_s=2 * b * count / compute_seconds)
                logger.log(state.step, state.train_seconds + step_seconds, values)
                bar.set_postfix(step=state.step, rec=f"{values['reconstruction']:.0f}",
                                gamma=f"{values['gamma']:.3g}", I_T=f"{values['mi']:.3f}",
                                img_s=f"{values['images_per_s']:.0f}", refresh=False)
                sums.clear()
                count, compute_seconds = 0, 0.0
            if state.step % cfg.train.image_every == 0:
                save_transfer_matrix(model, appearance["image"], pose["image"],
                                     run_dir / "transfer" / f"step-{state.step:07d}.png")
            if state.step % cfg.train.checkpoint_every == 0:
                state.train_seconds += time.perf_counter() - started
                started = time.perf_counter()
                state.save(ckpt)
            state.train_seconds += time.perf_counter() - started
            bar.update((min(round(state.train_seconds), round(budget)) - bar.n) if budget else 1)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous_handler)
        bar.close()
    state.save(ckpt)
    if interrupted:
        logger.close()
        print(f"interrupted at step {state.step}; saved {ckpt}; continue with --resume")
        raise KeyboardInterrupt
    save_transfer_matrix(model, appearance["image"], pose["image"], run_dir / "transfer_matrix.png", scale=2)
    logger.close()
    return run_dir


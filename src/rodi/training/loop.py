"""The training loop: sample pairs, one step of model and critics, update the method's global
quantities, log, draw, checkpoint. Ctrl-C saves a checkpoint before leaving."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

from rodi.config import Config, to_yaml
from rodi.data.sources import open_source
from rodi.training.distributed import init_from_environment, shutdown, wrap_step
from rodi.training.logging import ScalarLogger
from rodi.training.state import TrainState, resolve_device
from rodi.viz import save_transfer_matrix


class RunExistsError(RuntimeError):
    """A fresh run was asked for in a folder that already holds one."""


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the message names the term and the step."""


def checkpoint_path(run_dir: str | Path) -> Path:
    """The checkpoint a run resumes from: ``RUN/checkpoints/last.pt``."""
    return Path(run_dir) / "checkpoints" / "last.pt"


def _link_atomically(source: Path, target: Path) -> None:
    """Make ``target`` name the same file as ``source`` (a hard link, or a copy where links are not
    supported), replacing ``target`` atomically."""
    import shutil

    tmp = target.with_name(f".{target.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def save_checkpoints(state: TrainState, run_dir: Path, keep: int, validation: float | None = None) -> Path:
    """Write ``checkpoints/step-XXXXXXX.pt`` atomically, point ``last.pt`` at it, and ``best.pt``
    when ``validation`` (lower is better) beats the best so far; then delete the oldest step files
    beyond ``keep``, never the one ``best.pt`` names. No file is ever overwritten in place: a reader
    (or a crash) sees the old file or the new one.

    Returns:
        The new step file.
    """
    folder = run_dir / "checkpoints"
    step_file = folder / f"step-{state.step:07d}.pt"
    state.save(step_file)
    _link_atomically(step_file, folder / "last.pt")
    record = folder / "best.json"
    best = json.loads(record.read_text()) if record.is_file() else None
    if validation is not None and math.isfinite(validation) and (best is None or validation < best["validation"]):
        _link_atomically(step_file, folder / "best.pt")
        tmp = record.with_name(".best.json.tmp")
        tmp.write_text(json.dumps({"step": state.step, "validation": validation}))
        os.replace(tmp, record)
        best = {"step": state.step}
    steps = sorted(folder.glob("step-*.pt"))
    protected = {f"step-{best['step']:07d}.pt"} if best else set()
    for old in [f for f in steps if f.name not in protected][:-keep]:
        old.unlink(missing_ok=True)
    return step_file


@torch.no_grad()
def validation_error(model, source, n: int, seed: int = 99) -> float | None:
    """Mean transfer MSE (pixels in [-1, 1]) on ``n`` fixed triplets, or same-identity pairs for
    user data, of the ``validation`` split: training identities held out of training (and, for
    mocap, poses of training clips). The number ``best.pt`` is chosen by; it never looks at test
    data. None where the data has too few identities for a validation split (then no ``best.pt``
    is written, only ``last.pt``)."""
    from rodi.evaluation.triplets import pair_errors, triplet_errors

    if len(source.split("validation")) < (2 if hasattr(source, "triplet_indices") else 1):
        return None

    score = triplet_errors if hasattr(source, "triplet_indices") else pair_errors
    return score(model, source, n, seed, quality=False, split="validation")["transfer"].mean().item()


_RESUME_HINT = ("the last good checkpoint is kept; resume it with `rodi train --resume RUN_DIR`, "
                "for instance with a lower learning rate: `rodi train --resume RUN_DIR optim.lr=1e-4`")


def _check_finite(out: dict, step: int, dd=None, device=None) -> None:
    """Raise :class:`NonFiniteLossError` naming the first NaN or infinite loss term; under torchrun
    every process raises at the same step (one process's bad term stops all, none waits in an
    all-reduce the others never join)."""
    bad = next((name for name in ("reconstruction", "kl", "penalty", "critic_loss")
                if not torch.isfinite(out[name])), None)
    if dd is not None and dd.enabled and dd.any(bad is not None, device) and bad is None:
        raise NonFiniteLossError(f"a loss term is not finite on another process at step {step}; {_RESUME_HINT}")
    if bad is not None:
        raise NonFiniteLossError(f"loss term {bad!r} is {out[bad].item()} at step {step}; {_RESUME_HINT}")


def _check_finite_gradients(state: TrainState, step: int) -> None:
    """Raise before any optimiser steps when a gradient holds NaN or inf, naming the network."""
    for name, opt in state.optimizers.items():
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if grads and not torch.isfinite(torch.stack(torch._foreach_norm(grads))).all():
            raise NonFiniteLossError(f"the gradient of the {name} parameters is not finite at step {step}; "
                                     f"{_RESUME_HINT}")


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
    dd, device_name = init_from_environment(cfg.train.device)
    main = dd.is_main
    progress = progress and main
    device = resolve_device(device_name)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    source = open_source(cfg.data, cfg.model.image_size, progress)

    if resume:
        state = TrainState.from_checkpoint(ckpt, device, cfg)
    else:
        torch.manual_seed(cfg.train.seed)  # network initialisation depends on the seed only
        state = TrainState(cfg, device)
    state.objective.distributed = dd
    if main:  # one process writes
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in (run_dir / "checkpoints").glob(".*.tmp"):  # left by a run killed mid-write
            stale.unlink(missing_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        # a fresh run drops rows an attempt killed before its first checkpoint left behind
        logger = ScalarLogger(run_dir, resume_step=state.step if resume else 0)
    else:
        logger = _NoLogger()
    appearance, pose = source.fixed_examples(cfg.train.matrix_size)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.train.precision == "bf16")

    budget = cfg.train.max_minutes * 60 if cfg.train.max_minutes else None
    bar = tqdm(total=round(budget) if budget else cfg.train.max_steps, disable=not progress,
               unit="step", dynamic_ncols=True,
               bar_format=("{l_bar}{bar}| {n_fmt}/{total_fmt} s of budget [{elapsed}<{remaining}{postfix}]"
                           if budget else None),
               initial=min(round(state.train_seconds), round(budget)) if budget else state.step)
    sums: dict[str, float] = defaultdict(float)
    count, compute_seconds = 0, 0.0
    model, objective = state.model, state.objective
    step_losses = wrap_step(model, objective, dd, device)  # DistributedDataParallel under torchrun
    b = cfg.train.batch_size
    interrupted = []
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:  # signal handlers can only be installed there
        previous_handler = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    try:
        while not dd.any(state.step >= cfg.train.max_steps or bool(interrupted)
                         or (budget is not None and state.train_seconds >= budget), device):
            started = time.perf_counter()
            # every process draws the global batch and keeps its slice (distributed.py)
            batch = source.sample_pairs(b * dd.world_size, state.data_generator)
            batch = {k: dd.shard(batch[k]).to(device, non_blocking=True) for k in ("pose_image", "appearance_image")}
            state.apply_schedule()
            with autocast:
                out = step_losses(batch, state.step)
            _check_finite(out, state.step, dd, device)
            for opt in state.optimizers.values():
                opt.zero_grad(set_to_none=True)
            (out["model_loss"] + out["critic_loss"]).backward()  # DDP averages gradients over processes here
            _check_finite_gradients(state, state.step)
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
            if state.step % cfg.train.image_every == 0 and main:
                save_transfer_matrix(model, appearance["image"], pose["image"],
                                     run_dir / "transfer" / f"step-{state.step:07d}.png")
            if state.step % cfg.train.checkpoint_every == 0 and main:
                state.train_seconds += time.perf_counter() - started
                validation = validation_error(model, source, cfg.train.validation_items)
                if validation is not None:
                    logger.log_validation(state.step, state.train_seconds, validation)
                save_checkpoints(state, run_dir, cfg.train.keep_checkpoints, validation)
                started = time.perf_counter()
            state.train_seconds += time.perf_counter() - started
            bar.update((min(round(state.train_seconds), round(budget)) - bar.n) if budget else 1)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous_handler)
        bar.close()
    if main and (state.step % cfg.train.checkpoint_every != 0 or interrupted):  # not saved at this step yet
        finished = not interrupted
        validation = validation_error(model, source, cfg.train.validation_items) if finished else None
        if validation is not None:
            logger.log_validation(state.step, state.train_seconds, validation)
        save_checkpoints(state, run_dir, cfg.train.keep_checkpoints, validation)
    dd.barrier()
    shutdown(dd)
    if interrupted:
        logger.close()
        if main:
            print(f"interrupted at step {state.step}; saved {ckpt}; continue with --resume")
        raise KeyboardInterrupt
    if main:
        save_transfer_matrix(model, appearance["image"], pose["image"], run_dir / "transfer_matrix.png", scale=2)
    logger.close()
    return run_dir


class _NoLogger:
    """What processes other than the first log: nothing."""

    def log(self, *args, **kwargs) -> None:
        pass

    def log_validation(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


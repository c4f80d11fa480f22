"""The training loop, as named steps: sample a batch, one training step (:mod:`rodi.training.step`),
log a window of steps, draw the transfer matrix, validate and checkpoint. Ctrl-C saves a
checkpoint before leaving.

Validation is handed to :func:`train` as a callable (``rodi train`` gives it
:func:`rodi.evaluation.validation.validation`), so training never imports evaluation.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

import torch
from tqdm import tqdm

from rodi.atomic import link, replacing
from rodi.config import Config, to_yaml
from rodi.data.sources import open_source
from rodi.distributed import (
    Distributed,
    init_from_environment,
    resolve_device,
    shutdown,
    uses_bf16,
)
from rodi.models.networks import AppearancePoseModel
from rodi.training.logging import ScalarLogger
from rodi.training.state import RunExistsError, TrainState
from rodi.training.step import NonFiniteLossError, train_step, wrap_step
from rodi.viz import save_transfer_matrix

# validate(model, source) -> a held-out error (lower is better) that picks best.pt, or None where
# the data has no validation split
Validation = Callable[[AppearancePoseModel, object], Optional[float]]

__all__ = ["NonFiniteLossError", "RunExistsError", "Validation", "checkpoint_path",
           "save_checkpoints", "train"]


def checkpoint_path(run_dir: str | Path) -> Path:
    """The checkpoint a run resumes from: ``RUN/checkpoints/last.pt``."""
    return Path(run_dir) / "checkpoints" / "last.pt"


def save_checkpoints(state: TrainState, run_dir: Path, keep: int,
                     validation: float | None = None) -> Path:
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
    link(step_file, folder / "last.pt")
    record = folder / "best.json"
    best = json.loads(record.read_text()) if record.is_file() else None
    if (validation is not None and math.isfinite(validation)
            and (best is None or validation < best["validation"])):
        link(step_file, folder / "best.pt")
        with replacing(record) as tmp:
            tmp.write_text(json.dumps({"step": state.step, "validation": validation}))
        best = {"step": state.step}
    steps = sorted(folder.glob("step-*.pt"))
    protected = {f"step-{best['step']:07d}.pt"} if best else set()
    for old in [f for f in steps if f.name not in protected][:-keep]:
        old.unlink(missing_ok=True)
    return step_file


def train(cfg: Config, resume: bool = False, progress: bool = True,
          validate: Validation | None = None) -> Path:
    """Train (or resume) the run of ``cfg`` in ``cfg.train.out_dir``.

    Ctrl-C (SIGINT) ends the current step, saves a checkpoint and raises KeyboardInterrupt.

    The run folder holds ``config.yaml``, ``checkpoints/last.pt`` (and ``best.pt`` with
    ``validate``), ``scalars.csv``, ``validation.csv``, ``tensorboard/`` and
    ``transfer/step-XXXXXXX.png``.

    Args:
        cfg: resolved config; with ``resume`` it must match the checkpoint's model and objective.
        resume: continue from ``out_dir/checkpoints/last.pt`` exactly where it stopped.
        progress: show a progress bar.
        validate: scores the model on held-out data at every checkpoint, ``validate(model,
            source)`` (lower is better; None where there is no validation split); ``best.pt`` is
            the checkpoint with the lowest score. None: no validation, no ``best.pt``.

    Returns:
        The run folder.

    Raises:
        RunExistsError: a fresh run in a folder that has a checkpoint.
        CheckpointError: ``resume`` without a readable, matching checkpoint.
        NonFiniteLossError: a loss term became non-finite.
    """
    run = _Run.start(cfg, resume, progress, validate)
    interrupted: list[bool] = []
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:  # signal handlers can only be installed there
        previous_handler = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    try:
        while not run.done(bool(interrupted)):
            run.step()
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous_handler)
        run.bar.close()
    return run.finish(bool(interrupted))


class _Run:
    """One run of :func:`train` in progress: its state, data, logger, progress bar and the window of
    steps since the last log line. Each method is one named step of the loop."""

    def __init__(self, cfg: Config, run_dir: Path, state: TrainState, source, dd: Distributed,
                 logger, bar: tqdm, validate: Validation | None):
        self.cfg, self.run_dir, self.state, self.source, self.dd = cfg, run_dir, state, source, dd
        self.logger, self.bar, self.validate = logger, bar, validate
        self.device = state.device
        self.budget = _budget_seconds(cfg)
        # DDP under torchrun
        self.losses = wrap_step(state.model, state.objective, dd, state.device)
        self.appearance, self.pose = source.fixed_examples(cfg.train.matrix_size)
        self.sums: dict[str, float] = defaultdict(float)
        self.count, self.compute_seconds = 0, 0.0

    @classmethod
    def start(cls, cfg: Config, resume: bool, progress: bool,
              validate: Validation | None) -> "_Run":
        """Join the process group, open the data, build or resume the state, open the run
        folder."""
        run_dir = Path(cfg.train.out_dir)
        ckpt = checkpoint_path(run_dir)
        if not resume and ckpt.exists():
            raise RunExistsError(f"{run_dir} already holds a run ({ckpt}); continue it with "
                                 "--resume or choose another train.out_dir")
        dd, device_name = init_from_environment(cfg.train.device)
        progress = progress and dd.is_main
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
        logger = _open_run_folder(cfg, run_dir, state, resume) if dd.is_main else _NoLogger()
        return cls(cfg, run_dir, state, source, dd, logger, _progress_bar(cfg, state, progress),
                   validate)

    def done(self, interrupted: bool) -> bool:
        """Whether any process has reached the step or time budget, or was interrupted."""
        s, t = self.state, self.cfg.train
        finished = s.step >= t.max_steps or (self.budget is not None
                                             and s.train_seconds >= self.budget)
        return self.dd.any(finished or interrupted, self.device)

    def step(self) -> None:
        """One training step, then whatever falls due at the new step: a log line, a transfer
        matrix, a checkpoint. Checkpoints and validation are not counted as training time."""
        started = time.perf_counter()
        s, t = self.state, self.cfg.train
        # every process draws the global batch and keeps its slice (rodi.distributed)
        batch = self.source.sample_pairs(t.batch_size * self.dd.world_size, s.data_generator)
        batch = {k: self.dd.shard(batch[k]).to(self.device, non_blocking=True)
                 for k in ("pose_image", "appearance_image")}
        s.apply_schedule()
        out = train_step(s, self.losses, batch, self.dd)
        s.step += 1
        step_seconds = time.perf_counter() - started
        self._add_to_window(out, step_seconds)
        if s.step % t.log_every == 0:
            self.log_window(s.train_seconds + step_seconds)
        if s.step % t.image_every == 0 and self.dd.is_main:
            self.draw(self.run_dir / "transfer" / f"step-{s.step:07d}.png")
        if s.step % t.checkpoint_every == 0 and self.dd.is_main:
            s.train_seconds += time.perf_counter() - started
            self.checkpoint()
            started = time.perf_counter()
        s.train_seconds += time.perf_counter() - started
        self.bar.update((min(round(s.train_seconds), round(self.budget)) - self.bar.n)
                        if self.budget else 1)

    def _add_to_window(self, out: dict, seconds: float) -> None:
        self.compute_seconds += seconds
        self.count += 1
        for k in ("reconstruction", "kl", "mi", "mi_independent", "critic_accuracy",
                  "independent_critic_accuracy", "penalty"):
            self.sums[k] += out[k].item()

    def log_window(self, train_seconds: float) -> None:
        """Log the means of the window's scalars (plus gamma, lambda, the learning rate and
        images/s) as one row, show them on the progress bar, and start a new window."""
        s, objective = self.state, self.state.objective
        values = {k: v / self.count for k, v in self.sums.items()}
        values.update(gamma=objective.gamma.item(), **{"lambda": objective.multiplier.item()},
                      lr=s.optimizers["model"].param_groups[0]["lr"],
                      images_per_s=(2 * self.cfg.train.batch_size * self.count
                                    / self.compute_seconds))
        self.logger.log(s.step, train_seconds, values)
        self.bar.set_postfix(step=s.step, rec=f"{values['reconstruction']:.0f}",
                             gamma=f"{values['gamma']:.3g}", I_T=f"{values['mi']:.3f}",
                             img_s=f"{values['images_per_s']:.0f}", refresh=False)
        self.sums.clear()
        self.count, self.compute_seconds = 0, 0.0

    def draw(self, path: Path, scale: int = 1) -> None:
        """The transfer matrix of the fixed examples (appearance down, pose across) as a PNG."""
        save_transfer_matrix(self.state.eval_model, self.appearance["image"], self.pose["image"],
                             path, scale=scale)

    def checkpoint(self, validate: bool = True) -> None:
        """Validate (where there is a validation callable and split), log the score, and save the
        step's checkpoint, ``last.pt`` and, when the score is the best so far, ``best.pt``."""
        score = None
        if validate and self.validate is not None:
            score = self.validate(self.state.eval_model, self.source)
        if score is not None:
            self.logger.log_validation(self.state.step, self.state.train_seconds, score)
        save_checkpoints(self.state, self.run_dir, self.cfg.train.keep_checkpoints, score)

    def finish(self, interrupted: bool) -> Path:
        """Save a checkpoint unless this step has one (validated unless interrupted), leave the
        process group, and draw the final transfer matrix; an interruption raises
        KeyboardInterrupt after saving."""
        s = self.state
        if self.dd.is_main and (s.step % self.cfg.train.checkpoint_every != 0 or interrupted):
            self.checkpoint(validate=not interrupted)
        self.dd.barrier()
        shutdown(self.dd)
        if interrupted:
            self.logger.close()
            if self.dd.is_main:
                print(f"interrupted at step {s.step}; saved {checkpoint_path(self.run_dir)}; "
                      "continue with --resume")
            raise KeyboardInterrupt
        if self.dd.is_main:
            self.draw(self.run_dir / "transfer_matrix.png", scale=2)
            precision = ("bf16 autocast" if uses_bf16(self.cfg.train.precision, self.device)
                         else "float32")
            print(f"trained to step {s.step} in {s.train_seconds / 60:.1f} min of training steps "
                  f"({precision}); saved {checkpoint_path(self.run_dir)}")
        self.logger.close()
        return self.run_dir


def _open_run_folder(cfg: Config, run_dir: Path, state: TrainState, resume: bool) -> ScalarLogger:
    """Create the run folder, drop temporary files a run killed mid-write left (of checkpoints,
    the config and the scalar logs), write the config, and open the scalar logs (a fresh run drops
    rows an attempt killed before its first checkpoint left behind)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*run_dir.glob(".*.tmp"), *(run_dir / "checkpoints").glob(".*.tmp")]:
        stale.unlink(missing_ok=True)
    with replacing(run_dir / "config.yaml") as tmp:
        tmp.write_text(to_yaml(cfg))
    return ScalarLogger(run_dir, resume_step=state.step if resume else 0)


def _budget_seconds(cfg: Config) -> float | None:
    """The wall-clock budget of training steps in seconds, or None for a step budget only."""
    return cfg.train.max_minutes * 60 if cfg.train.max_minutes else None


def _progress_bar(cfg: Config, state: TrainState, progress: bool) -> tqdm:
    """Steps of the step budget, or seconds of the time budget."""
    budget = _budget_seconds(cfg)
    # on a terminal the bar redraws in place; in a log file every redraw adds its bytes, so a log
    # gets one update a minute instead of one at every step
    interactive = sys.stderr.isatty()
    return tqdm(total=round(budget) if budget else cfg.train.max_steps, disable=not progress,
                unit="step", dynamic_ncols=True, mininterval=0.1 if interactive else 60.0,
                bar_format=("{l_bar}{bar}| {n_fmt}/{total_fmt} s of budget "
                            "[{elapsed}<{remaining}{postfix}]"
                            if budget else None),
                initial=min(round(state.train_seconds), round(budget)) if budget else state.step)


class _NoLogger:
    """What processes other than the first log: nothing."""

    def log(self, *args, **kwargs) -> None:
        pass

    def log_validation(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


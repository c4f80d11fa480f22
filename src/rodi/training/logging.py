"""Scalars of a run, to TensorBoard and to a CSV file."""

from __future__ import annotations

import csv
from pathlib import Path

SCALARS = (
    "reconstruction", "kl", "gamma", "lambda", "mi", "mi_independent", "critic_accuracy",
    "independent_critic_accuracy", "penalty", "lr", "images_per_s",
)


class ScalarLogger:
    """Appends one row per logging step to ``run_dir/scalars.csv`` and mirrors it to TensorBoard
    under ``run_dir/tensorboard``. Columns: step, train_seconds, then :data:`SCALARS`
    (reconstruction: SSE per image; kl, mi (I_T), mi_independent (I_T'): nats).

    Args:
        run_dir: the run's folder.
        resume_step: when resuming, rows logged after this step (by a run killed before its next
            checkpoint) are dropped, so the file holds each step once.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.path = Path(run_dir) / "scalars.csv"
        if resume_step is not None and self.path.exists():
            with self.path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            with self.path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=("step", "train_seconds") + SCALARS)
                writer.writeheader()
                writer.writerows(rows)
        new = not self.path.exists()
        self._file = self.path.open("a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=("step", "train_seconds") + SCALARS)
        if new:
            self._csv.writeheader()
        self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def log(self, step: int, train_seconds: float, values: dict) -> None:
        row = {"step": step, "train_seconds": round(train_seconds, 3)}
        row.update({k: values[k] for k in SCALARS if k in values})
        self._csv.writerow(row)
        self._file.flush()
        for k in SCALARS:
            if k in values:
                self._tb.add_scalar(f"train/{k}", values[k], step)

    def close(self) -> None:
        self._file.close()
        self._tb.close()

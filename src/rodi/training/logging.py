"""Scalars of a run, to TensorBoard and to a CSV file."""

from __future__ import annotations

import csv
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from rodi.atomic import replacing

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
        resume_step: rows logged after this step (by a run killed before its next checkpoint) are
            dropped, so the file holds each step once: the checkpoint's step when resuming, 0 for a
            fresh run; None keeps every row.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        self.path = Path(run_dir) / "scalars.csv"
        self.validation_path = Path(run_dir) / "validation.csv"
        fields = ("step", "train_seconds") + SCALARS
        self._file, self._csv = _open_csv(self.path, fields, resume_step)
        self._val_file, self._val_csv = _open_csv(self.validation_path,
                                                  ("step", "train_seconds", "val_transfer_mse"),
                                                  resume_step)
        self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def log(self, step: int, train_seconds: float, values: dict) -> None:
        """One row of training scalars (missing ones left empty)."""
        row = {"step": step, "train_seconds": round(train_seconds, 3)}
        row.update({k: values[k] for k in SCALARS if k in values})
        self._csv.writerow(row)
        self._file.flush()
        for k in SCALARS:
            if k in values:
                self._tb.add_scalar(f"train/{k}", values[k], step)

    def log_validation(self, step: int, train_seconds: float, transfer_mse: float) -> None:
        """One row of ``validation.csv``: held-out transfer MSE (pixels in [-1, 1]) at a
        checkpoint."""
        self._val_csv.writerow({"step": step, "train_seconds": round(train_seconds, 3),
                                "val_transfer_mse": transfer_mse})
        self._val_file.flush()
        self._tb.add_scalar("validation/transfer_mse", transfer_mse, step)

    def close(self) -> None:
        self._file.close()
        self._val_file.close()
        self._tb.close()


def _open_csv(path: Path, fields: tuple[str, ...], resume_step: int | None):
    """Open ``path`` for appending. Unless ``resume_step`` is None, keep only complete rows up to it
    (a run killed mid-write leaves a partial last line; rows after the checkpoint are redone),
    rewriting the file atomically."""
    if resume_step is not None and path.exists():
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f)
                    if None not in r.values() and None not in r and r["step"].isdigit()
                    and int(r["step"]) <= resume_step]
        with replacing(path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    new = not path.exists() or path.stat().st_size == 0
    file = path.open("a", newline="")
    writer = csv.DictWriter(file, fieldnames=fields)
    if new:
        writer.writeheader()
    return file, writer

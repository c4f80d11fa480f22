"""A run killed with SIGKILL at random moments, checkpoint writes included, resumes to exactly the
state of an uninterrupted run, and no checkpoint on disk is ever unreadable.

``RODI_KILL_POINTS`` sets how many kills (default 5; the closing measurement used 20).
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import tiny_overrides
from rodi.training.loop import checkpoint_path, save_checkpoints
from rodi.training.state import TrainState, read_checkpoint

KILL_POINTS = int(os.environ.get("RODI_KILL_POINTS", "5"))
STEPS = 60
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _overrides(run):
    return tiny_overrides(run, **{"train.max_steps": STEPS, "train.checkpoint_every": 2,
                                  "train.log_every": 1, "train.image_every": 1000,
                                  "train.keep_checkpoints": 2, "train.validation_items": 4,
                                  "train.threads": 1})


def _train(run, resume: bool) -> subprocess.Popen:
    args = ["--resume", str(run / "run")] if resume else ["sprites", *_overrides(run)]
    return subprocess.Popen([sys.executable, "-m", "rodi.cli", "train", *args, "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)


def _assert_checkpoints_readable(run_dir):
    for f in (run_dir / "checkpoints").glob("*.pt"):
        read_checkpoint(f)  # raises CheckpointError on a partial or corrupt file


def _final_state(run_dir):
    return TrainState.from_checkpoint(checkpoint_path(run_dir))


def test_sigkill_at_random_moments_then_resume_matches_uninterrupted(tmp_path):
    reference = tmp_path / "reference"
    proc = _train(reference, resume=False)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()

    crashed = tmp_path / "crashed"
    rng = random.Random(1234)
    kills, steps_at_kill, temp_files_seen = 0, [], 0
    while kills < KILL_POINTS:
        started = checkpoint_path(crashed / "run").exists()
        proc = _train(crashed, resume=started)
        scalars = crashed / "run" / "scalars.csv"
        lines = len(scalars.read_text().splitlines()) if scalars.exists() else 0
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:  # wait until it trains, then kill
            if scalars.exists() and len(scalars.read_text().splitlines()) > lines:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is not None:  # finished before the kill
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        kills += 1
        temp_files_seen += len(list((crashed / "run" / "checkpoints").glob(".*.tmp")))
        _assert_checkpoints_readable(crashed / "run")
        if checkpoint_path(crashed / "run").exists():
            steps_at_kill.append(read_checkpoint(checkpoint_path(crashed / "run"))["step"])
    if proc.poll() is None or proc.returncode != 0:
        proc = _train(crashed, resume=checkpoint_path(crashed / "run").exists())
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert kills >= min(KILL_POINTS, 3), f"only {kills} kills landed"
    print(f"\n{kills} SIGKILLs; checkpoint step on disk after each: {steps_at_kill}; "
          f"temporary files left by kills mid-write, removed on resume: {temp_files_seen}")
    _assert_checkpoints_readable(crashed / "run")

    a, b = _final_state(reference / "run"), _final_state(crashed / "run")
    assert a.step == b.step == STEPS
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(p, q), (f"model parameter {name} differs after {kills} kills "
                                   f"at steps {steps_at_kill}")
    for (name, p), q in zip(a.objective.state_dict().items(), b.objective.state_dict().values()):
        assert torch.equal(p, q), f"objective {name} (lambda, gamma, averages, critics) differs"
    for k in a.optimizers:
        sa, sb = a.optimizers[k].state_dict()["state"], b.optimizers[k].state_dict()["state"]
        assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"])
                   for i in sa), f"{k} Adam moments differ"
    rows = (crashed / "run" / "scalars.csv").read_text().splitlines()[1:]
    assert ([int(r.split(",")[0]) for r in rows]
            == list(range(1, STEPS + 1))), "each step logged exactly once"


def test_checkpoints_rotate_and_keep_best(tmp_path, sheets_root):
    from rodi.config import load_config

    cfg = load_config("sprites", tiny_overrides(tmp_path))
    state = TrainState(cfg, torch.device("cpu"))
    run = tmp_path / "run"
    for step, validation in zip(range(1, 7), (0.5, 0.3, 0.4, 0.6, 0.7, 0.8)):
        state.step = step
        save_checkpoints(state, run, keep=2, validation=validation)
    names = sorted(f.name for f in (run / "checkpoints").glob("*.pt"))
    assert names == ["best.pt", "last.pt", "step-0000002.pt", "step-0000005.pt", "step-0000006.pt"]
    assert read_checkpoint(run / "checkpoints" / "best.pt")["step"] == 2
    assert read_checkpoint(run / "checkpoints" / "last.pt")["step"] == 6


@pytest.mark.parametrize("term", ["loss", "gradient"])
def test_non_finite_values_stop_the_run_and_name_the_term(tmp_path, monkeypatch, term):
    from rodi.config import load_config
    from rodi.objectives.disentangling import DisentanglingObjective
    from rodi.training.loop import NonFiniteLossError, train

    cfg = load_config("sprites", tiny_overrides(tmp_path, **{"train.max_steps": 6}))
    original = DisentanglingObjective.forward

    def poisoned(self, model, batch, step):
        out = original(self, model, batch, step)
        if step == 3:
            if term == "loss":
                out["kl"] = out["kl"] * float("nan")
            else:  # finite loss, infinite gradient: sqrt at 0
                out["model_loss"] = (out["model_loss"]
                                     + (next(model.parameters()) * 0).abs().sqrt().sum())
        return out

    monkeypatch.setattr(DisentanglingObjective, "forward", poisoned)
    with pytest.raises(NonFiniteLossError,
                       match="kl" if term == "loss" else "gradient of the model") as err:
        train(cfg, progress=False)
    assert "step 3" in str(err.value) and "--resume" in str(err.value)
    kept = read_checkpoint(checkpoint_path(tmp_path / "run"))
    assert kept["step"] == 2  # the last good checkpoint
    monkeypatch.setattr(DisentanglingObjective, "forward", original)
    lower = load_config(None, ["optim.lr=1e-5", f"train.out_dir={tmp_path / 'run'}"],
                        base=kept["config"])
    train(lower, resume=True, progress=False)
    assert read_checkpoint(checkpoint_path(tmp_path / "run"))["step"] == 6

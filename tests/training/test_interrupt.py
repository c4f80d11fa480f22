import os
import signal
import subprocess
import sys
import time

from conftest import tiny_overrides
from rodi.training.loop import checkpoint_path
from rodi.training.state import TrainState


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path):
    overrides = tiny_overrides(tmp_path, **{"train.max_steps": 100000,
                                            "train.checkpoint_every": 100000,
                                            "train.image_every": 100000})
    cmd = [sys.executable, "-m", "rodi.cli", "train", "sprites", *overrides, "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    scalars = tmp_path / "run" / "scalars.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not scalars.exists()
                                      or len(scalars.read_text().splitlines()) < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted at step" in output and "--resume" in output
    state = TrainState.from_checkpoint(checkpoint_path(tmp_path / "run"))
    assert state.step >= 4
    resumed = subprocess.run([sys.executable, "-m", "rodi.cli", "train",
                              "--resume", str(tmp_path / "run"),
                              f"train.max_steps={state.step + 2}", "--no-progress"],
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert TrainState.from_checkpoint(checkpoint_path(tmp_path / "run")).step == state.step + 2

"""Behaviour before and after a change that should not change it: train every variant for a few CPU
steps with two checkouts of rodi and compare every entry of the checkpoints with ``torch.equal``.

    git worktree add /tmp/rodi-before <commit>        # the code as it was
    python benchmarks/refactor_equivalence.py --before /tmp/rodi-before/src --after src

Each case runs ``python -m rodi.cli train`` in a fresh process with one torch thread, once per
checkout (``PYTHONPATH`` picks the checkout), and compares ``checkpoints/last.pt``: the networks,
the objective's buffers (gamma, lambda, moving averages), every optimiser state and the RNG states.
The config, version string and wall-clock seconds are not compared. Prints one line per case and
exits 1 when any entry differs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

SHORT = ["train.max_minutes=null", "train.batch_size=8", "train.threads=1", "train.log_every=5",
         "train.image_every=15", "train.checkpoint_every=15", "train.validation_items=16",
         "objective.warmup_steps=10", "train.matrix_size=3"]
CASES = {
    **{f"demo-{v}": ["demo", f"objective.variant={v}", *SHORT]
       for v in ("ae", "variational", "adversarial", "rodi", "drnet")},
    "demo-rodi-options": ["demo", *SHORT, "objective.pose_colour_jitter=0.3",
                          "objective.critic_code=mean", "objective.reconstruction=sse",
                          "model.upsample=transpose", "optim.schedule=constant"],
    "sprites-rodi": ["sprites", *SHORT],
}
IGNORED = {"config", "rodi_version", "train_seconds"}


def differences(a, b, path: str = "") -> list[str]:
    """Dotted paths where two checkpoint trees differ (tensors by ``torch.equal``)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype \
            and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [path]
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}" for k in set(a) ^ set(b)]
        for k in sorted(set(a) & set(b), key=str):
            if k not in IGNORED:
                out += differences(a[k], b[k], f"{path}.{k}" if path else str(k))
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [path]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


def count_tensors(tree) -> int:
    if isinstance(tree, torch.Tensor):
        return 1
    if isinstance(tree, dict):
        return sum(count_tensors(v) for k, v in tree.items() if k not in IGNORED)
    if isinstance(tree, (list, tuple)):
        return sum(count_tensors(v) for v in tree)
    return 0


def run(src: str, args: list[str], out_dir: Path, steps: int, data_root: str | None) -> Path:
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()), "OMP_NUM_THREADS": "1"}
    extra = [f"data.root={data_root}"] if data_root and args[0].startswith("sprites") else []
    cmd = [sys.executable, "-m", "rodi.cli", "train", args[0], *args[1:], *extra,
           f"train.max_steps={steps}", f"train.out_dir={out_dir}", "--no-progress"]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return out_dir / "checkpoints" / "last.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="src folder of the checkout as it was")
    parser.add_argument("--after", default="src", help="src folder of the changed checkout")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--data-root", default=os.environ.get("RODI_SPRITES_ROOT"),
                        help="Sprites layer sheets (default: $RODI_SPRITES_ROOT)")
    parser.add_argument("--work-dir", default=None,
                        help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="rodi-equivalence-"))
    failed = False
    for name in args.cases:
        before = run(args.before, CASES[name], work / "before" / name, args.steps, args.data_root)
        after = run(args.after, CASES[name], work / "after" / name, args.steps, args.data_root)
        a = torch.load(before, map_location="cpu", weights_only=True)
        b = torch.load(after, map_location="cpu", weights_only=True)
        diff = differences(a, b)
        failed |= bool(diff)
        verdict = ("equal" if not diff
                   else f"DIFFERENT: {', '.join(diff[:5])}{' ...' if len(diff) > 5 else ''}")
        print(f"{name:20s} step {b['step']}: {count_tensors(b)} tensors, {verdict}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

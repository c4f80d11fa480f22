"""Training throughput against the machine's limit, measured in one run.

Prints, for a config and batch size: the data source's own images/s, training images/s (a full
step: sampling, forward, backward, optimiser steps, multiplier and gamma updates), the FLOPs of one
training step (forward and backward, critics included, counted by torch.utils.flop_counter), the
achieved FLOP/s, the sustained FLOP/s of a large float32 matmul on the same device, and their ratio
(model FLOP utilisation, MFU).

    python benchmarks/throughput.py sprites --data-root ../shared/data/lpc-sprites
    python benchmarks/throughput.py demo --batch-size 64 train.threads=2
    python benchmarks/throughput.py sprites train.device=cuda train.precision=bf16 --batch-size 256

Extra arguments are config overrides (key=value). Images are counted as 2 per pair.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from rodi.config import load_config
from rodi.data.sources import open_source
from rodi.distributed import resolve_device, uses_bf16
from rodi.training.state import TrainState
from rodi.training.step import train_step, wrap_step


def matmul_flops_per_second(device: torch.device, n: int = 2048, seconds: float = 3.0,
                            dtype: torch.dtype = torch.float32) -> float:
    """Sustained FLOP/s of an n x n matmul in ``dtype``, repeated for about ``seconds``."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype),
            torch.randn(n, n, device=device, dtype=dtype))
    torch.mm(a, b)
    _sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        count += 1
        if device.type == "cuda" and count % 10:
            continue
        _sync(device)
    _sync(device)
    return 2 * n**3 * count / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(state: TrainState, losses, batch: dict, step: int) -> None:
    """The training loop's step (rodi.training.step.train_step) at ``step``."""
    state.step = step
    train_step(state, losses, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default="sprites")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="pairs per step (default: the config's)")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--data-root", default=None)
    args, extra = parser.parse_known_args()
    args.overrides += extra  # key=value pairs given after the options
    overrides = [f"train.out_dir={tempfile.mkdtemp(prefix='rodi-throughput-')}", *args.overrides]
    if args.batch_size:
        overrides.append(f"train.batch_size={args.batch_size}")
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    cfg = load_config(args.config, overrides)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    source = open_source(cfg.data, cfg.model.image_size)
    state = TrainState(cfg, device)
    losses = wrap_step(state.model, state.objective, state.objective.distributed, device)
    b = cfg.train.batch_size
    g = torch.Generator().manual_seed(0)
    step = cfg.objective.warmup_steps  # constraint on: the most expensive step of the method

    def batch():
        out = source.sample_pairs(b, g)
        return {k: out[k].to(device) for k in ("pose_image", "appearance_image")}

    for _ in range(3):
        batch()
    start = time.perf_counter()
    n = max(5, args.steps // 2)
    for _ in range(n):
        batch()
    data_images_per_s = 2 * b * n / (time.perf_counter() - start)

    for _ in range(3):  # warm-up
        _step(state, losses, batch(), step)
    with FlopCounterMode(display=False) as counter:
        _step(state, losses, batch(), step)
    flops_per_step = counter.get_total_flops()

    _sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        _step(state, losses, batch(), step)
    _sync(device)
    seconds = (time.perf_counter() - start) / args.steps
    bf16 = uses_bf16(cfg.train.precision, device)
    dtype = torch.bfloat16 if bf16 else torch.float32
    peak = matmul_flops_per_second(device, n=8192 if device.type == "cuda" else 2048, dtype=dtype)
    achieved = flops_per_step / seconds
    params = sum(p.numel() for p in state.model.parameters())
    print(f"config {args.config}, variant {cfg.objective.variant}, batch {b} pairs, "
          f"image {cfg.model.image_size} px, model {params / 1e6:.2f}M parameters, "
          f"device {device}, threads {torch.get_num_threads()}")
    print(f"data source alone:     {data_images_per_s:9.0f} images/s")
    print(f"training:              {2 * b / seconds:9.0f} images/s "
          f"({seconds * 1000:.0f} ms per step)")
    print(f"FLOPs per step:        {flops_per_step / 1e9:9.2f} GFLOP "
          "(forward + backward, critics included)")
    print(f"achieved:              {achieved / 1e9:9.1f} GFLOP/s")
    side = 8192 if device.type == "cuda" else 2048
    print(f"{'bf16' if bf16 else 'float32'} matmul:        {peak / 1e9:9.1f} GFLOP/s "
          f"({side} x {side}, same device)")
    print(f"model FLOP utilisation {100 * achieved / peak:9.1f} %")
    if device.type == "cuda":
        print(f"peak GPU memory:       {torch.cuda.max_memory_allocated(device) / 2**30:9.2f} GiB")


if __name__ == "__main__":
    main()

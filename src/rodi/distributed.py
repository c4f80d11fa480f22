"""Devices and processes: the device a run asks for, and data-parallel training across processes
launched by ``torchrun`` (torch.distributed).

Every process draws the same global batch of ``world_size * train.batch_size`` pairs with the shared
data generator and keeps its own slice, so a run on W processes sees exactly the data of a
single-process run with a W times larger batch. Gradients are averaged by torch's
DistributedDataParallel (:func:`rodi.training.step.wrap_step`): bucketed all-reduces that overlap
with the backward pass. It wraps one module holding the networks and the objective
(:class:`rodi.training.step.TrainingStep`), so the model's and the critics' gradients, each for its
own optimiser, are reduced in the same pass; the critics' inputs and the encoder's penalty path
through a frozen copy of T are detached, so they add no extra reduction. The method's global
quantities are computed identically on every process: the critics score the pose and appearance
codes of the whole global batch (gathered, detached), the constraint I_T - epsilon is all-reduced
before the Lagrange multiplier moves, and the moving averages of I_T and I_T' that set gamma come
from those global numbers. So lambda and gamma are bitwise the same on every process.

    torchrun --standalone --nproc_per_node 2 -m rodi.cli train sprites   # 2 CPU processes (gloo)
    torchrun --standalone --nproc_per_node 8 -m rodi.cli train sprites   # 8 GPUs (nccl)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from rodi.config import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU.

    Raises:
        ConfigError: an unknown device name, or CUDA asked for and not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name} asked for, but CUDA is not available on this machine; "
                          "use cpu or auto")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware: a CUDA device that supports bf16,
    or a CPU with AMX tiles (Intel Sapphire Rapids and later). On other CPUs bf16 is emulated and
    slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch's own CPU probe
        return bool(amx and amx())
    return False


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether training steps run under bf16 autocast: ``train.precision`` ``bf16``, or ``auto``
    on a device with native bf16 (:func:`native_bf16`); ``32`` never. Convolutions and matrix
    products then run in bf16 and every loss term in float32 (the networks return float32)."""
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


@dataclass(frozen=True)
class Distributed:
    """Where this process sits: ``rank`` in ``world_size`` processes, ``local_rank`` on its
    machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, tensor: torch.Tensor) -> torch.Tensor:
        """This process's slice of a global batch along dimension 0 (size divisible by
        world_size)."""
        if not self.enabled:
            return tensor
        n = tensor.shape[0] // self.world_size
        return tensor[self.rank * n:(self.rank + 1) * n]

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every process's (B, ...) tensor in rank order: (world_size * B, ...), without
        gradient (for the critics, which only ever see detached codes)."""
        if not self.enabled:
            return tensor.detach()
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.detach().contiguous())
        return torch.cat(parts)

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean over processes of a detached tensor (the same result on every process)."""
        if not self.enabled:
            return tensor
        out = tensor.detach().clone()
        dist.all_reduce(out)
        return out / self.world_size

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process when ``flag`` is true on any (to stop all processes at one
        step)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


SINGLE = Distributed()


def init_from_environment(device_name: str) -> tuple[Distributed, str]:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``); a plain ``python``/``rodi`` process stays single.

    Returns:
        ``(distributed, device_name)``: on CUDA each process takes ``cuda:LOCAL_RANK`` and the
        ``nccl`` backend; on the CPU, ``gloo``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE, device_name
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = (device_name.startswith("cuda")
                or (device_name == "auto" and torch.cuda.is_available()))
    if use_cuda:
        torch.cuda.set_device(local)
        device_name = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Distributed(rank, world, local), device_name


def shutdown(distributed: Distributed) -> None:
    """Leave the process group (after the last collective)."""
    if distributed.enabled and dist.is_initialized():
        dist.destroy_process_group()

"""Hardware: devices, bf16 autocast and torchrun/DDP process groups."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .config import DeviceUnavailableError, _device_problem

# ----------------------------------------------------------------------------- hardware


@dataclass(frozen=True)
class DistInfo:
    """Process-group facts: ``rank`` of ``world_size`` processes, ``local_rank`` on this host."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:<local_rank>`` if CUDA is available, else ``cpu``.

    Raises ``ValueError`` for a misspelt device (``banana``) and
    :class:`DeviceUnavailableError` for a device this machine lacks (``cuda`` without a GPU,
    ``cuda:3`` with one GPU, ``mps`` off Apple silicon).
    """
    if device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    problem = _device_problem(device)
    if problem:
        raise ValueError(problem)
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = (
                f"torch {torch.__version__} is a CPU-only build"
                if torch.version.cuda is None
                else "no CUDA GPU or driver is visible"
            )
            raise DeviceUnavailableError(
                f"CUDA is not available on this machine ({build}), but device {device!r} was "
                "asked for; use --device cpu (or auto)"
            )
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
        count = torch.cuda.device_count()
        if dev.index >= count:
            raise DeviceUnavailableError(
                f"this machine has {count} CUDA GPU{'s' if count != 1 else ''} "
                f"(cuda:0 … cuda:{count - 1}), but device {str(dev)!r} was asked for"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError(
            f"Apple's Metal (mps) is not available on this machine, but device {device!r} was "
            "asked for; use --device cpu (or auto)"
        )
    return dev


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: ``bf16`` → bfloat16; ``auto`` → bfloat16 on CUDA with bf16 support,
    else None (float32); ``off`` → None."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def init_distributed(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group when ``WORLD_SIZE > 1`` (nccl on CUDA, gloo on CPU).

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``
    through the ``env://`` init method). Returns the process facts and this rank's device.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = resolve_device(device, local_rank if world > 1 else 0)
    if world <= 1:
        return DistInfo(), dev
    import torch.distributed as dist

    here = False
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        here = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, here), dev

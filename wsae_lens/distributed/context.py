"""The process group: started from torchrun's (or Slurm's) environment, described by a small dataclass.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
under ``srun`` without torchrun the ``SLURM_PROCID`` / ``SLURM_NTASKS`` / ``SLURM_LOCALID`` variables
are read instead (``MASTER_ADDR`` / ``MASTER_PORT`` must then be exported by the job script).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 300.0
"""How long a collective waits for a missing rank before failing (``WSAE_DIST_TIMEOUT_S`` overrides)."""


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that logs, checkpoints and saves."""
        return self.rank == 0


def distributed_context() -> DistributedContext:
    """The current process group's ranks, or rank 0 of 1 when ``torch.distributed`` is not initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0)))
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def _launcher_environment() -> tuple[int, int] | None:
    """(rank, world size) from torchrun's or Slurm's environment; ``None`` when launched as one process."""
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if "SLURM_NTASKS" in os.environ and "SLURM_PROCID" in os.environ and "MASTER_ADDR" in os.environ:
        return int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
    return None


def init_distributed(backend: str | None = None, timeout_s: float | None = None) -> DistributedContext:
    """Join the process group described by the launcher's environment (idempotent).

    A single process (no ``WORLD_SIZE``/``SLURM_NTASKS``, or a world of 1) stays undistributed. The
    backend is ``nccl`` when CUDA is available and ``gloo`` otherwise; ``timeout_s`` (default
    :data:`DEFAULT_TIMEOUT_S`) bounds how long a collective waits for a rank that died.
    """
    if dist.is_available() and dist.is_initialized():
        return distributed_context()
    launched = _launcher_environment()
    if launched is None or launched[1] <= 1:
        return DistributedContext()
    rank, world_size = launched
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        raise RuntimeError("torch.distributed needs MASTER_ADDR and MASTER_PORT; launch with torchrun, or export "
                           "them in the job script (e.g. the first node's host name and a free port).")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    timeout = timedelta(seconds=timeout_s or float(os.environ.get("WSAE_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S)))
    dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timeout)
    context = distributed_context()
    if backend == "nccl":
        torch.cuda.set_device(context.local_rank)
    return context


def shutdown_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

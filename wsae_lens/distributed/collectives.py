"""Collectives of a data-parallel run: sums, maxima, broadcasts and gathers over the ranks.

:class:`DataParallel` wraps ``torch.distributed`` for the few reductions data-parallel training needs; on
one rank (no process group) every method returns its input unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from wsae_lens.distributed.context import DistributedContext, distributed_context


@dataclass(frozen=True)
class DataParallel:
    """Collectives over the ranks of a data-parallel run; on one rank every method returns its input."""

    context: DistributedContext = field(default_factory=DistributedContext)

    @classmethod
    def current(cls) -> DataParallel:
        """The process group this process has joined (rank 0 of 1 when none)."""
        return cls(distributed_context())

    @property
    def world_size(self) -> int:
        return self.context.world_size

    @property
    def rank(self) -> int:
        return self.context.rank

    @property
    def is_distributed(self) -> bool:
        return self.context.is_distributed

    @property
    def is_main(self) -> bool:
        return self.context.is_main

    def share(self, total: int) -> int:
        """This rank's part of ``total`` (the first ``total % world`` ranks take one more)."""
        return total // self.world_size + int(self.rank < total % self.world_size)

    def _reduce(self, tensor: torch.Tensor, op: Any) -> torch.Tensor:
        if not self.is_distributed:
            return tensor
        work = tensor if tensor.is_contiguous() else tensor.contiguous()
        comm = work.to(self._device())
        dist.all_reduce(comm, op=op)
        if comm is not tensor:
            tensor.copy_(comm)
        return tensor

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In place: the sum over the ranks."""
        return self._reduce(tensor, dist.ReduceOp.SUM)

    def max_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In place: the element-wise maximum over the ranks."""
        return self._reduce(tensor, dist.ReduceOp.MAX)

    def agree_on_signal(self, signum: int) -> int:
        """The largest signal number any rank received (0: none); every rank calls it before each step."""
        return int(self.max_(torch.tensor([signum]))[0])

    def any_rank(self, value: bool) -> bool:
        """True on every rank when ``value`` is true on any rank."""
        return bool(self.agree_on_signal(int(value)))

    def broadcast_(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """In place: rank ``src``'s values on every rank."""
        if not self.is_distributed:
            return tensor
        comm = tensor.contiguous().to(self._device())
        dist.broadcast(comm, src=src)
        if comm is not tensor:
            tensor.copy_(comm)
        return tensor

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's ``rows`` ([n_r, ...], n_r may differ) concatenated in rank order, on every rank."""
        if not self.is_distributed:
            return rows
        device = self._device()
        sizes = torch.zeros(self.world_size, dtype=torch.int64, device=device)
        sizes[self.rank] = rows.shape[0]
        self.sum_(sizes)
        longest = int(sizes.max())
        padded = torch.zeros((longest, *rows.shape[1:]), dtype=rows.dtype, device=device)
        padded[: rows.shape[0]] = rows.to(device)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat([part[: int(n)] for part, n in zip(parts, sizes)]).to(rows.device)

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def _device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


class GatheredBatches:
    """An iterator over the global batches: each rank's next batch, gathered from every rank in rank order.

    Every rank must advance it equally often (SAELens's normalisation estimates do: a fixed batch count).
    """

    def __init__(self, batches: Iterable[torch.Tensor], parallel: DataParallel) -> None:
        self.batches = iter(batches)
        self.parallel = parallel

    def __iter__(self) -> GatheredBatches:
        return self

    def __next__(self) -> torch.Tensor:
        return self.parallel.gather_rows(next(self.batches))


def iterate_gathered(batches: Iterable[Any], parallel: DataParallel, d_in: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """(activations [n, d_in], labels) pairs gathered from every rank, round by round, until every rank ran out.

    Ranks may hold different numbers of batches (one that ran out adds no rows); labels are gathered when
    every rank's batches have them (ranks that ran out do not count).
    """
    iterator = iter(batches)
    while True:
        batch = next(iterator, None)
        flags = torch.tensor([int(batch is not None), int(batch is None or batch[1] is not None)])
        counts = parallel.sum_(flags)
        if counts[0] == 0:
            return
        activations = torch.empty(0, d_in) if batch is None else batch[0].reshape(-1, d_in).float()
        gathered = parallel.gather_rows(activations)
        labels = None
        if int(counts[1]) == parallel.world_size:
            local = torch.empty(0, dtype=torch.int64) if batch is None else batch[1].reshape(-1).long()
            labels = parallel.gather_rows(local)
        yield gathered, labels

"""Which rank trains which SAE (``distribute_saes``), and how each step's activations reach the owners.

With ``distribute_saes: true`` under ``torchrun`` the SAEs are dealt out round-robin in config order
(SAE i → rank i mod world size); every rank runs the language model on its own disjoint shard of the
dataset, and at each step :meth:`SAEPlacement.exchange` sends every hook's local rows to the ranks that
own an SAE on that hook (``dist.gather`` when one rank needs the hook, ``dist.all_gather`` when several
do), concatenated in rank order: an SAE trains on the global batch

    x_global = [x_rank0; x_rank1; …; x_rank(W−1)]   (train_batch_size_tokens rows, W = world size)

while each rank produces train_batch_size_tokens / W of them. In one process (or without
``distribute_saes``) every SAE is owned locally and :meth:`exchange` returns its input.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from wsae_lens.distributed import DistributedContext
from wsae_lens.distributed.collectives import DataParallel


@dataclass(frozen=True)
class SAEPlacement:
    """``owners[name]``: the rank that trains SAE ``name``; ``hook_names[name]``: its hook."""

    context: DistributedContext
    owners: dict[str, int]
    hook_names: dict[str, str]

    @classmethod
    def build(cls, hook_names: Mapping[str, str], context: DistributedContext, distribute: bool) -> SAEPlacement:
        """Round-robin over the SAEs in config order when ``distribute``; else every SAE on this rank."""
        if distribute and len(hook_names) < context.world_size:
            raise ValueError(
                f"distribute_saes: {len(hook_names)} SAEs for {context.world_size} ranks; every rank needs at least "
                "one SAE: add SAEs, launch fewer ranks, or set distribute_saes: false."
            )
        owners = {name: (i % context.world_size if distribute else context.rank) for i, name in enumerate(hook_names)}
        return cls(context, owners, dict(hook_names))

    @property
    def distributed(self) -> bool:
        return self.context.is_distributed and len(set(self.owners.values())) > 1

    @property
    def owned(self) -> list[str]:
        """The SAEs this rank trains, in config order."""
        return [name for name, rank in self.owners.items() if rank == self.context.rank]

    @property
    def hooks(self) -> list[str]:
        """Every hook any rank needs, in config order (each rank's model forward captures all of them)."""
        return list(dict.fromkeys(self.hook_names.values()))

    def needers(self, hook: str) -> list[int]:
        """The ranks that own an SAE on ``hook``."""
        return sorted({self.owners[name] for name, h in self.hook_names.items() if h == hook})

    def exchange(self, local: Mapping[str, torch.Tensor | None]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Send each entry's rows to the ranks that need it; also returns the row counts [world, entries].

        ``local`` maps an entry key (a hook, or ``(hook, "ids")``: every key names its hook first) to this
        rank's rows, or ``None`` for none (its data ended). Every rank passes the same keys in the same order.
        The result maps each key this rank needs to the rows of all ranks, in rank order. Row counts of
        −1 mark a rank whose data ended.
        """
        keys = list(local)
        if not self.distributed:
            counts = torch.tensor([[-1 if t is None else t.shape[0] for t in local.values()]])
            return {k: t for k, t in local.items() if t is not None}, counts
        world, rank = self.context.world_size, self.context.rank
        device = next((t.device for t in local.values() if t is not None), torch.device("cpu"))
        mine = torch.tensor([-1 if t is None else t.shape[0] for t in local.values()], device=device)
        counts = [torch.zeros_like(mine) for _ in range(world)]
        dist.all_gather(counts, mine)
        table = torch.stack(counts).cpu()
        if (table < 0).any():
            return {}, table
        out: dict[str, torch.Tensor] = {}
        for column, key in enumerate(keys):
            tensor = local[key]
            assert tensor is not None
            hook = key[0] if isinstance(key, tuple) else key
            needers = self.needers(hook)
            rows = int(table[:, column].max())
            padded = tensor.new_zeros((rows, *tensor.shape[1:]))
            padded[: tensor.shape[0]] = tensor
            parts = [torch.empty_like(padded) for _ in range(world)] if rank in needers else None
            if len(needers) == 1:
                dist.gather(padded, parts, dst=needers[0])
            else:
                parts = parts or [torch.empty_like(padded) for _ in range(world)]
                dist.all_gather(parts, padded)
            if rank in needers:
                assert parts is not None
                out[key] = torch.cat([part[: int(table[r, column])] for r, part in enumerate(parts)])
        return out, table

    @property
    def parallel(self) -> DataParallel:
        """Collectives over this placement's ranks (no-ops in one process)."""
        return DataParallel(self.context)


class ExchangingProvider:
    """A multi-hook data provider whose local batches (train_batch_size_tokens / W rows per hook) are
    exchanged, so that each rank gets the global batch of every hook it owns an SAE on."""

    def __init__(self, provider: Iterator[dict[str, torch.Tensor]], placement: SAEPlacement) -> None:
        self.provider = provider
        self.placement = placement

    def __iter__(self) -> ExchangingProvider:
        return self

    def __next__(self) -> dict[str, Any]:
        return self.placement.exchange(next(self.provider))[0]

"""Each rank's share of the training data: every ``world_size``-th row, starting at the rank's own.

Rank r of W reads rows r, r + W, r + 2W, … of the (pre-tokenised) dataset or of the cached activations
(``Dataset.shard(W, r, contiguous=False)``). The ranks together therefore read the rows in the order one
process reads them: with ``activations_mixing_fraction: 0``, no dropped tokens and per-rank batches of
whole rows, the global batch of step t *is* the single-process batch of step t. A read position is then
one number for every world size, the rows read globally; checkpoints store it where SAELens does
(``n_dataset_processed``; the cached-activation row), plus the per-rank positions, which a resume with the
same world size restores exactly. Another world size (or one process) starts every rank at the first of
its rows not yet read globally. A streaming dataset is split with ``datasets``'
``split_dataset_by_node`` (by files when their number divides W), where positions are approximate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datasets import Dataset, IterableDataset


@dataclass(frozen=True)
class DataShard:
    """Rows ``rank``, ``rank + world_size``, … of the data."""

    rank: int
    world_size: int

    def rows_below(self, global_rows: int) -> int:
        """How many of this shard's rows are among the first ``global_rows`` rows of the data."""
        return max(0, -(-(global_rows - self.rank) // self.world_size))


def shard_dataset(dataset: Any, shard: DataShard) -> Any:
    """This rank's rows of a Hugging Face dataset (``ValueError`` naming ``dataset_path`` if too small)."""
    if isinstance(dataset, IterableDataset):
        from datasets.distributed import split_dataset_by_node

        return split_dataset_by_node(dataset, rank=shard.rank, world_size=shard.world_size)
    if not isinstance(dataset, Dataset):
        raise TypeError(f"cannot shard a {type(dataset).__name__}; data-parallel training needs a datasets.Dataset.")
    if len(dataset) < shard.world_size:
        raise ValueError(
            f"the dataset (dataset_path) has {len(dataset)} rows, fewer than the {shard.world_size} ranks; "
            "use a larger dataset or fewer ranks."
        )
    return dataset.shard(num_shards=shard.world_size, index=shard.rank, contiguous=False)


def shard_cached_activations(cache: Dataset, shard: DataShard, rows_per_read: int, path: str | None) -> Dataset:
    """This rank's rows of a cached-activations dataset; ``ValueError`` naming ``cached_activations_path``
    when a rank would get fewer rows than one store read (``store_batch_size_prompts``)."""
    if len(cache) // shard.world_size < rows_per_read:
        raise ValueError(
            f"cached_activations_path={path!r} holds {len(cache)} sequences; {shard.world_size} ranks reading "
            f"store_batch_size_prompts={rows_per_read} each need at least {shard.world_size * rows_per_read}. "
            "Cache more tokens, lower store_batch_size_prompts, or use fewer ranks."
        )
    return cache.shard(num_shards=shard.world_size, index=shard.rank, contiguous=False)


def rows_read(n_dataset_processed: int) -> int:
    """Rows an ``ActivationsStore`` has read given its ``n_dataset_processed``.

    SAELens counts a row when the next one is requested, so after reading n > 0 rows it reports n − 1.
    """
    return n_dataset_processed + 1 if n_dataset_processed > 0 else 0


def n_dataset_processed_for(rows: int) -> int:
    """The ``n_dataset_processed`` SAELens reports after reading ``rows`` rows (inverse of :func:`rows_read`)."""
    return max(rows - 1, 0)

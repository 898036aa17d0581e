"""Data-parallel set-up checks that need no process group: batch split, shard sizes, read positions."""

from __future__ import annotations

import pytest
from datasets import Dataset

from wsae_lens.distributed.collectives import DataParallel
from wsae_lens.distributed.data_parallel import check_batch_split
from wsae_lens.distributed.context import DistributedContext
from wsae_lens.distributed.sharding import DataShard, n_dataset_processed_for, rows_read, shard_cached_activations, shard_dataset


def test_batch_must_split_evenly_over_the_ranks():
    assert check_batch_split(4096, 4) == 1024
    with pytest.raises(ValueError, match=r"train_batch_size_tokens=4097 .* multiple of 4 \(e.g. 4096 or 4100\)"):
        check_batch_split(4097, 4)


def test_rank_r_reads_every_world_size_th_row():
    rows = Dataset.from_dict({"input_ids": [[i] for i in range(7)]})
    assert [shard_dataset(rows, DataShard(r, 3))["input_ids"] for r in range(3)] == [[[0], [3], [6]], [[1], [4]], [[2], [5]]]
    with pytest.raises(ValueError, match="dataset_path"):
        shard_dataset(rows.select(range(2)), DataShard(0, 3))


def test_a_cache_too_small_for_the_ranks_is_refused_naming_the_field():
    cache = Dataset.from_dict({"x": list(range(10))})
    assert len(shard_cached_activations(cache, DataShard(1, 2), rows_per_read=4, path="c")) == 5
    with pytest.raises(ValueError, match=r"cached_activations_path='c' holds 10 sequences; 3 ranks .* store_batch_size_prompts=4"):
        shard_cached_activations(cache, DataShard(0, 3), rows_per_read=4, path="c")


def test_global_positions_map_to_each_ranks_next_row():
    # 11 rows read globally: rank 0 of 2 read rows 0, 2, …, 10 (6), rank 1 rows 1, …, 9 (5)
    assert [DataShard(r, 2).rows_below(11) for r in (0, 1)] == [6, 5]
    assert DataShard(3, 4).rows_below(2) == 0
    assert rows_read(n_dataset_processed_for(24)) == 24  # SAELens counts a row when the next is requested


def test_one_rank_is_not_distributed():
    parallel = DataParallel(DistributedContext())
    assert not parallel.is_distributed and parallel.share(10) == 10
    assert DataParallel(DistributedContext(rank=1, world_size=3)).share(10) == 3

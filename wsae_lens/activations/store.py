"""SAELens's ``ActivationsStore`` with the :class:`~wsae_lens.activations.TokenFilter` on its training road.

SAELens filters training batches in one method, ``get_filtered_llm_batch`` (special tokens only);
:class:`FilteredActivationsStore` overrides that method to apply the full filter, so SAELens's trainer,
its mixing buffer and ``use_cached_activations`` all see exactly the tokens Γ estimation sees.

In data-parallel training the store reads one rank's rows (``shard``,
:mod:`wsae_lens.distributed.sharding`) and its checkpoint state holds the global read position.
"""

from __future__ import annotations

from typing import Any

import torch
from safetensors.torch import load_file
from sae_lens.training.activations_store import ActivationsStore

from wsae_lens.activations.filtering import DEFAULT_OUTLIER_NORM_RATIO, TokenFilter
from wsae_lens.distributed.sharding import DataShard, n_dataset_processed_for, rows_read

CACHED_ROW_KEY = "current_row_idx"
SHARD_POSITIONS_KEY = "data_parallel_positions"
"""[world size, 2] (rows read, next cached row) of every rank, in a data-parallel checkpoint."""


class FilteredActivationsStore(ActivationsStore):
    """An ``ActivationsStore`` whose filtered batches drop special and outlier tokens.

    Build it as SAELens's (``FilteredActivationsStore.from_config(model, cfg, ...)``) and set
    ``token_filter``; left unset, the store's ``exclude_special_tokens`` and the default outlier rule
    are used.
    """

    token_filter: TokenFilter | None = None
    shard: DataShard | None = None
    shard_positions: torch.Tensor | None = None

    def get_filtered_batch(self, raise_on_epoch_end: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next LLM batch (activations, token ids) with the filter applied."""
        activations, token_ids = self.get_raw_llm_batch(raise_on_epoch_end=raise_on_epoch_end)
        return store_token_filter(self).apply(activations, token_ids)

    def get_filtered_llm_batch(self, raise_on_epoch_end: bool = False) -> torch.Tensor:
        return self.get_filtered_batch(raise_on_epoch_end)[0]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """SAELens's (``n_dataset_processed``) plus, over cached activations, the next row to read:
        SAELens's own state leaves it out, so a resumed run would start the cache again from row 0.
        A sharded store records global positions (after :meth:`gather_shard_positions`)."""
        state = super().state_dict()
        if self.cached_activation_dataset is not None:
            state[CACHED_ROW_KEY] = torch.tensor(self.current_row_idx)
        if self.shard is not None:
            if self.shard_positions is None:
                raise RuntimeError("a sharded store's state needs every rank's position: call gather_shard_positions first.")
            positions = self.shard_positions
            state["n_dataset_processed"] = torch.tensor(n_dataset_processed_for(int(positions[:, 0].sum())))
            state[CACHED_ROW_KEY] = positions[:, 1].sum()
            state[SHARD_POSITIONS_KEY] = positions.clone()
        return state

    def gather_shard_positions(self, parallel: Any) -> None:
        """Collect every rank's read position (a collective: every rank calls it) for :meth:`state_dict`."""
        cached_row = self.current_row_idx if self.cached_activation_dataset is not None else 0
        local = torch.tensor([[rows_read(self.n_dataset_processed), cached_row]], dtype=torch.int64)
        self.shard_positions = parallel.gather_rows(local)

    def load(self, file_path: str) -> None:
        if self.shard is None:
            super().load(file_path)
            state = load_file(file_path)
            if self.cached_activation_dataset is not None and CACHED_ROW_KEY in state:
                self.current_row_idx = int(state[CACHED_ROW_KEY].item())
            return
        state = load_file(file_path)
        positions = state.get(SHARD_POSITIONS_KEY)
        if positions is not None and positions.shape[0] == self.shard.world_size:
            rows, cached_row = (int(v) for v in positions[self.shard.rank])
        else:  # written by another world size: start at this rank's first row not read globally
            rows = self.shard.rows_below(rows_read(int(state.get("n_dataset_processed", torch.tensor(0)).item())))
            cached_row = self.shard.rows_below(int(state.get(CACHED_ROW_KEY, torch.tensor(0)).item()))
        if self.dataset is not None:
            while self.n_dataset_processed < n_dataset_processed_for(rows):
                self.get_batch_tokens(batch_size=1, move_to_model_device=False)
        if self.cached_activation_dataset is not None:
            self.current_row_idx = cached_row


def store_token_filter(store: ActivationsStore, outlier_norm_ratio: float | None = DEFAULT_OUTLIER_NORM_RATIO) -> TokenFilter:
    """``store``'s filter: its own ``token_filter`` if set, else (and then attached to it) the store's
    special tokens with the outlier rule."""
    existing = getattr(store, "token_filter", None)
    if existing is not None:
        return existing
    token_filter = TokenFilter(special_token_ids=store.exclude_special_tokens, outlier_norm_ratio=outlier_norm_ratio)
    if isinstance(store, FilteredActivationsStore):
        store.token_filter = token_filter
    return token_filter


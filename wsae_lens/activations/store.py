"""SAELens's ``ActivationsStore`` with the :class:`~wsae_lens.activations.TokenFilter` on its training road.

SAELens filters training batches in one method, ``get_filtered_llm_batch`` (special tokens only);
:class:`FilteredActivationsStore` overrides that method to apply the full filter, so SAELens's trainer,
its mixing buffer and ``use_cached_activations`` all see exactly the tokens Γ estimation sees.
"""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from sae_lens.training.activations_store import ActivationsStore

from wsae_lens.activations.filtering import DEFAULT_OUTLIER_NORM_RATIO, TokenFilter


CACHED_ROW_KEY = "current_row_idx"


class FilteredActivationsStore(ActivationsStore):
    """An ``ActivationsStore`` whose filtered batches drop special and outlier tokens.

    Build it as SAELens's (``FilteredActivationsStore.from_config(model, cfg, ...)``) and set
    ``token_filter``; left unset, the store's ``exclude_special_tokens`` and the default outlier rule
    are used.
    """

    token_filter: TokenFilter | None = None

    def get_filtered_batch(self, raise_on_epoch_end: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next LLM batch (activations, token ids) with the filter applied."""
        activations, token_ids = self.get_raw_llm_batch(raise_on_epoch_end=raise_on_epoch_end)
        return store_token_filter(self).apply(activations, token_ids)

    def get_filtered_llm_batch(self, raise_on_epoch_end: bool = False) -> torch.Tensor:
        return self.get_filtered_batch(raise_on_epoch_end)[0]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """SAELens's (``n_dataset_processed``) plus, over cached activations, the next row to read:
        SAELens's own state leaves it out, so a resumed run would start the cache again from row 0."""
        state = super().state_dict()
        if self.cached_activation_dataset is not None:
            state[CACHED_ROW_KEY] = torch.tensor(self.current_row_idx)
        return state

    def load(self, file_path: str) -> None:
        super().load(file_path)
        state = load_file(file_path)
        if self.cached_activation_dataset is not None and CACHED_ROW_KEY in state:
            self.current_row_idx = int(state[CACHED_ROW_KEY].item())


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


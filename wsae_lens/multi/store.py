"""SAELens's multi-hook ``ActivationsStore`` with one :class:`~wsae_lens.activations.TokenFilter` per hook.

SAELens's multi-hook store runs the model once per batch of prompts, captures every hook, drops special
tokens and mixes the hooks' rows with one shared permutation (rows stay aligned across hooks).
:class:`FilteredMultiHookActivationsStore` overrides its filtering seam (``_get_filtered_multi_hook_llm_batch``)
so that each hook's filter (special tokens + outliers above C × that hook's median norm) is applied; to keep
the rows aligned a token is kept at every hook only when every hook's filter keeps it,

    keep_t = ∧_h keep_t^(h),

and each filter counts what it flagged itself. Γ estimation (:mod:`wsae_lens.multi.prepare`) applies each
hook's filter on its own, exactly as a single-SAE run on that hook would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from sae_lens.constants import ACTIVATIONS_STORE_STATE_FILENAME
from sae_lens.training.activations_store import ActivationsStore

from wsae_lens.activations import TokenFilter


class FilteredMultiHookActivationsStore(ActivationsStore):
    """A multi-hook store (build it with ``from_config_multi_hook``) filtered by ``token_filters`` (hook → filter).

    ``state_filename``: where ``save_to_checkpoint`` / ``load_from_checkpoint`` keep the store's position
    (one file per rank when ranks read different shards).
    """

    token_filters: dict[str, TokenFilter]
    state_filename: str = ACTIVATIONS_STORE_STATE_FILENAME

    @torch.no_grad()
    def get_raw_multi_hook_batch(self, raise_on_epoch_end: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The next LLM batch, unfiltered: hook → activations [tokens, d_in], and the token ids [tokens]."""
        tokens = self.get_batch_tokens(raise_at_epoch_end=raise_on_epoch_end)
        activations = self.get_multi_hook_activations(tokens)
        token_ids = tokens[:, slice(*self.seqpos_slice)].reshape(-1).to(self.device)
        return {h: a.to(self.device).reshape(-1, a.shape[-1]) for h, a in activations.items()}, token_ids

    def _get_filtered_multi_hook_llm_batch(self, raise_on_epoch_end: bool = False) -> dict[str, torch.Tensor]:
        activations, token_ids = self.get_raw_multi_hook_batch(raise_on_epoch_end)
        keep = torch.ones_like(token_ids, dtype=torch.bool)
        for hook, acts in activations.items():
            keep &= self.token_filters[hook].keep_mask(acts, token_ids)
        if bool(keep.all()):
            return activations
        return {hook: acts[keep] for hook, acts in activations.items()}

    def save_to_checkpoint(self, checkpoint_path: str | Path) -> None:
        save_file(self.state_dict(), str(Path(checkpoint_path) / self.state_filename))

    def load_from_checkpoint(self, checkpoint_path: str | Path) -> None:
        self.load(str(Path(checkpoint_path) / self.state_filename))


def build_multi_hook_store(cfg: Any, model: Any, dataset: Any, hook_d_ins: dict[str, int],
                           hook_head_indices: dict[str, int | None], *, exclude_special_tokens: torch.Tensor | None,
                           token_filters: dict[str, TokenFilter], train_batch_size_tokens: int) -> FilteredMultiHookActivationsStore:
    """A :class:`FilteredMultiHookActivationsStore` from a multi-SAE runner config, with the arguments
    SAELens's ``MultiSAETrainingRunner`` gives its store (per-SAE scaling is left to the trainers)."""
    store = FilteredMultiHookActivationsStore.from_config_multi_hook(
        model=model, dataset=dataset, hook_names=list(hook_d_ins), hook_d_ins=hook_d_ins,
        hook_head_indices=hook_head_indices, streaming=cfg.streaming, context_size=cfg.context_size,
        n_batches_in_buffer=cfg.n_batches_in_buffer, total_training_tokens=cfg.training_tokens,
        store_batch_size_prompts=cfg.store_batch_size_prompts, train_batch_size_tokens=train_batch_size_tokens,
        prepend_bos=cfg.prepend_bos, normalize_activations="none", device=torch.device(cfg.act_store_device),
        dtype=cfg.dtype, model_kwargs=cfg.model_kwargs, autocast_lm=cfg.autocast_lm,
        dataset_trust_remote_code=cfg.dataset_trust_remote_code, seqpos_slice=cfg.seqpos_slice,
        exclude_special_tokens=exclude_special_tokens, disable_concat_sequences=cfg.disable_concat_sequences,
        sequence_separator_token=cfg.sequence_separator_token,
        activations_mixing_fraction=cfg.activations_mixing_fraction, use_chat_formatting=cfg.use_chat_formatting,
    )
    assert isinstance(store, FilteredMultiHookActivationsStore)
    store.token_filters = token_filters
    return store

"""The one road for activations: every accepted source → filtered [tokens, d_in] batches with token ids.

:func:`iter_activation_batches` is the only place where activations are read for Γ estimation,
diagnostics and evaluation, and the only place where the :class:`~wsae_lens.activations.TokenFilter`
(special tokens, massive-activation outliers) is applied to them; SAELens's training store applies the
same filter through :class:`~wsae_lens.activations.FilteredActivationsStore`.

Accepted sources:

* a ``torch.Tensor`` [..., d_in] (one batch), or an iterable of tensors, or of ``(activations,
  labels)`` pairs (labels: one integer per token, e.g. token ids);
* a SAELens ``ActivationsStore``: batches come from ``get_raw_llm_batch`` (LLM forward passes, or the
  store's cached activations), with the store's ``exclude_special_tokens`` removed exactly as its
  training loader does, and with token ids as labels. This *advances the store's dataset*: to leave a
  training store untouched, estimate from a fresh store built from the same config
  (:class:`wsae_lens.WeightedSAETrainingRunner` does that). SAELens's trainer later multiplies the
  batches by one scalar (``normalize_activations="expected_average_only_in"``); Γ normalised to
  mean(γ²) = 1 and semantic consistency (per-sample L2-normalised) are invariant to it.
* a directory written by SAELens's ``CacheActivationsRunner`` (``datasets.save_to_disk`` with a
  column named after the hook, [context_size, d_in] per row, and ``token_ids``);
* a language model and pre-tokenised rows, through :func:`model_activation_batches`.

Filtering: ``token_filter`` if given; otherwise real-model sources (a store, a cached directory) get
the default policy (the store's special tokens and the outlier rule, :func:`source_token_filter`) and
tensors are passed through unfiltered.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
from sae_lens.training.activations_store import ActivationsStore

from wsae_lens.activations.filtering import TokenFilter

TOKEN_IDS_COLUMN = "token_ids"
"""Column of token ids in a SAELens cached-activations directory."""


class ActivationBatch(NamedTuple):
    """Activations [tokens, d_in] and, where the source has them, one integer label per token."""

    activations: torch.Tensor
    labels: torch.Tensor | None


class TokenCounter:
    """Wrap an iterable of batches (any accepted source's batches) and count the tokens read."""

    def __init__(self, batches: Iterable[ActivationBatch]) -> None:
        self.batches = batches
        self.tokens = 0

    def __iter__(self) -> Iterator[ActivationBatch]:
        for batch in self.batches:
            self.tokens += batch.activations.shape[0]
            yield batch


def source_token_filter(source: Any) -> TokenFilter:
    """The default filter for ``source``: a store's own (special tokens + outliers), the outlier rule for a
    cached directory, nothing for tensors and iterables (give ``token_filter`` explicitly there)."""
    from wsae_lens.activations.store import store_token_filter

    if isinstance(source, ActivationsStore):
        return store_token_filter(source)
    if isinstance(source, (str, Path)):
        return TokenFilter()
    return TokenFilter.keep_all()


def iter_activation_batches(
    source: Any,
    *,
    max_tokens: int | None = None,
    hook_name: str | None = None,
    tokens_per_batch: int = 65_536,
    token_filter: TokenFilter | None = None,
) -> Iterator[ActivationBatch]:
    """Yield filtered :class:`ActivationBatch` es from ``source`` until it ends or ``max_tokens`` kept
    tokens were read.

    The last batch is cut so that exactly ``min(max_tokens, available)`` tokens are yielded.
    ``hook_name`` picks the column of a cached directory with several hooks; ``tokens_per_batch``
    sets how many tokens a cached directory yields at a time; ``token_filter`` (default
    :func:`source_token_filter`) drops special and outlier tokens.
    """
    if max_tokens is not None and max_tokens <= 0:
        raise ValueError(f"max_tokens must be a positive number of tokens (or None for all), got {max_tokens}.")
    token_filter = source_token_filter(source) if token_filter is None else token_filter
    remaining = max_tokens
    for raw in _raw_batches(source, max_tokens=max_tokens, hook_name=hook_name, tokens_per_batch=tokens_per_batch):
        batch = ActivationBatch(*token_filter.apply(raw.activations, raw.labels))
        if remaining is not None and batch.activations.shape[0] > remaining:
            labels = None if batch.labels is None else batch.labels[:remaining]
            batch = ActivationBatch(batch.activations[:remaining], labels)
        yield batch
        if remaining is not None:
            remaining -= batch.activations.shape[0]
            if remaining <= 0:
                return


def _raw_batches(source: Any, *, max_tokens: int | None, hook_name: str | None, tokens_per_batch: int) -> Iterator[ActivationBatch]:
    if isinstance(source, ActivationsStore):
        yield from _store_batches(source, max_tokens)
    elif isinstance(source, (str, Path)):
        yield from _cached_directory_batches(Path(source), hook_name, tokens_per_batch)
    elif isinstance(source, torch.Tensor):
        yield _as_batch(source, 0)
    elif isinstance(source, Iterable):
        for index, item in enumerate(source):
            yield _as_batch(item, index)
    else:
        raise TypeError(
            f"cannot read activations from a {type(source).__name__}: pass an iterable of [tokens, d_in] tensors "
            "(or (activations, labels) pairs), a SAELens ActivationsStore, or a cached-activations directory."
        )


def _as_batch(item: Any, index: int) -> ActivationBatch:
    labels = None
    if isinstance(item, ActivationBatch) or (isinstance(item, (tuple, list)) and len(item) == 2):
        item, labels = item
    if not isinstance(item, torch.Tensor) or item.ndim == 0:
        raise TypeError(
            f"batch {index} is a {type(item).__name__}; expected a tensor [tokens, d_in] "
            "or an (activations, labels) pair."
        )
    activations = item.reshape(-1, item.shape[-1])
    if labels is not None:
        labels = torch.as_tensor(labels).reshape(-1)
        if labels.shape[0] != activations.shape[0]:
            raise ValueError(
                f"batch {index} has {labels.shape[0]} labels for {activations.shape[0]} tokens: "
                "give exactly one label per token (activation row)."
            )
    return ActivationBatch(activations, labels)


def _store_batches(store: ActivationsStore, max_tokens: int | None) -> Iterator[ActivationBatch]:
    if max_tokens is None:
        raise ValueError(
            "max_tokens is required for an ActivationsStore (its stream restarts forever); "
            "pass e.g. max_tokens=2_000_000 or set weighting_tokens."
        )
    while True:
        try:
            activations, token_ids = store.get_raw_llm_batch(raise_on_epoch_end=True)
        except StopIteration:
            return  # one full pass over the dataset
        yield ActivationBatch(activations, token_ids)


def cached_activations_hook_name(directory: Path, hook_name: str | None = None) -> str:
    """The activation column of a cached directory: ``hook_name`` if given, else its only non-token column."""
    import datasets

    columns = datasets.load_from_disk(str(directory)).column_names
    if hook_name is not None:
        if hook_name not in columns:
            raise ValueError(f"{directory} has no column {hook_name!r} (columns: {columns}); check hook_name.")
        return hook_name
    candidates = [c for c in columns if c != TOKEN_IDS_COLUMN]
    if len(candidates) != 1:
        raise ValueError(f"{directory} has activation columns {candidates}; pass hook_name to choose one.")
    return candidates[0]


def _cached_directory_batches(directory: Path, hook_name: str | None, tokens_per_batch: int) -> Iterator[ActivationBatch]:
    import datasets

    if not directory.is_dir():
        raise FileNotFoundError(
            f"{directory} is not a directory: pass a SAELens cached-activations directory (CacheActivationsRunner output)."
        )
    try:
        dataset = datasets.load_from_disk(str(directory))
    except FileNotFoundError as err:
        raise ValueError(f"{directory} is not a datasets.save_to_disk directory (CacheActivationsRunner output).") from err
    hook = cached_activations_hook_name(directory, hook_name)
    columns = [hook] + ([TOKEN_IDS_COLUMN] if TOKEN_IDS_COLUMN in dataset.column_names else [])
    dataset = dataset.with_format("torch", columns=columns)
    context_size = dataset.features[hook].shape[0]
    rows = max(1, tokens_per_batch // context_size)
    for start in range(0, len(dataset), rows):
        chunk = dataset[start : start + rows]
        activations = chunk[hook]
        activations = activations.reshape(-1, activations.shape[-1])
        labels = chunk[TOKEN_IDS_COLUMN].reshape(-1).long() if TOKEN_IDS_COLUMN in chunk else None
        yield ActivationBatch(activations, labels)


@torch.no_grad()
def model_activation_batches(
    model: Any, token_rows: torch.Tensor, hook_name: str, batch_prompts: int = 8
) -> Iterator[ActivationBatch]:
    """Unfiltered (activations, token ids) at ``hook_name`` of a HookedTransformer for pre-tokenised rows
    [rows, context]; the forward stops after the hook's layer. Feed it to :func:`iter_activation_batches`
    with a ``token_filter``."""
    stop_at_layer = hook_layer(hook_name) + 1
    for start in range(0, token_rows.shape[0], batch_prompts):
        tokens = token_rows[start : start + batch_prompts]
        _, cache = model.run_with_cache(tokens, names_filter=[hook_name], stop_at_layer=stop_at_layer)
        acts = cache[hook_name]
        yield ActivationBatch(acts.reshape(-1, acts.shape[-1]), tokens.reshape(-1).to(acts.device))


def hook_layer(hook_name: str) -> int:
    """The block index of a ``blocks.{layer}.…`` hook name."""
    parts = hook_name.split(".")
    if len(parts) < 2 or parts[0] != "blocks" or not parts[1].isdigit():
        raise ValueError(f"hook_name={hook_name!r} is not a 'blocks.<layer>.<hook>' name; pass a block hook.")
    return int(parts[1])

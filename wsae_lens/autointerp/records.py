"""Latent records: what an explainer and a scorer get to see about one SAE latent.

A record holds, for latent j of an SAE, contexts from an activation source with the latent's
per-token activations a_j(t) = encode(x_t)_j:

* the ``n_explanation_examples`` top-activating contexts (ranked by max_t a_j(t)), shown to the explainer;
* held-out activating contexts sampled evenly from ``n_quantiles`` bins of the remaining activating
  contexts (delphi's quantile sampling, arXiv 2410.13928), the scorers' positives;
* random contexts on which the latent never fires, the scorers' negatives;
* the latent's activation quantiles over the contexts where it fires, and its token firing rate.

Tokens with a_j(t) > ``activation_threshold`` count as firing and are marked ``<<like this>>``; positions
the source's :class:`~wsae_lens.activations.TokenFilter` drops (default: the tokenizer's special tokens such
as BOS, and massive-activation outliers) never fire.
Latents are drawn uniformly at random (seeded) among live latents: those firing on at least one scanned
context. Two passes: the first encodes every context and keeps only per-context maxima (n_contexts ×
d_sae floats); the second re-encodes the few contexts the chosen latents need, token by token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from wsae_lens.activations import DEFAULT_OUTLIER_NORM_RATIO, TokenFilter
from wsae_lens.autointerp.config import AutoInterpConfig

QUANTILE_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


class ActivationSource(Protocol):
    """Where contexts and their model activations come from (a model + tokens, or a SAELens store)."""

    def token_batches(self, n_contexts: int, batch_size: int) -> Iterator[torch.Tensor]:
        """Yield ``[batch, context]`` token-id tensors, ``n_contexts`` rows in total (fewer if exhausted)."""
        ...

    def activations(self, tokens: torch.Tensor) -> torch.Tensor:
        """The hooked activations ``[batch, context, d_in]`` of these tokens, aligned position by position."""
        ...

    def token_strings(self, token_ids: Sequence[int]) -> list[str]:
        """The text of each token (one string per id) for display."""
        ...


def source_token_filter(source: Any) -> TokenFilter:
    """The source's filter (``token_filter``); sources without one keep every position."""
    return getattr(source, "token_filter", None) or TokenFilter.keep_all()


def _default_filter(tokenizer: Any, excluded_token_ids: Sequence[int] | None, token_filter: TokenFilter | None) -> TokenFilter:
    if token_filter is not None:
        return token_filter
    special = list(excluded_token_ids) if excluded_token_ids is not None else _special_token_ids(tokenizer)
    return TokenFilter(special_token_ids=special, outlier_norm_ratio=DEFAULT_OUTLIER_NORM_RATIO)


def _special_token_ids(tokenizer: Any) -> list[int]:
    return sorted(set(getattr(tokenizer, "all_special_ids", None) or [])) if tokenizer is not None else []


def tokenizer_token_strings(tokenizer: Any) -> Callable[[Sequence[int]], list[str]]:
    """Per-token text from a Hugging Face tokenizer (``decode`` of each id alone keeps leading spaces)."""
    return lambda ids: [tokenizer.decode([int(i)]) for i in ids]


def byte_token_strings(ids: Sequence[int]) -> list[str]:
    """Per-token text for byte-level vocabularies (token id = byte value, decoded as Latin-1)."""
    return [bytes([int(i)]).decode("latin-1") for i in ids]


def _token_rows(tokens: torch.Tensor | Iterable[Sequence[int]] | Any) -> torch.Tensor:
    """Turn a tensor, a list of rows or a datasets.Dataset (``input_ids`` or ``tokens`` column) into ``[n, ctx]``."""
    if isinstance(tokens, torch.Tensor):
        rows = tokens
    elif hasattr(tokens, "column_names"):
        column = next((c for c in ("input_ids", "tokens") if c in tokens.column_names), None)
        if column is None:
            raise ValueError(
                f"token dataset needs an `input_ids` or `tokens` column; it has {tokens.column_names}."
            )
        rows = tokens.with_format("torch")[:][column]  # a tensor, or a list of tensors if rows are ragged
        if not isinstance(rows, torch.Tensor):
            raise ValueError(f"token dataset rows in `{column}` must all have the same length.")
    else:
        rows = torch.tensor(list(tokens))
    if rows.ndim != 2:
        raise ValueError(f"tokens must be 2-D [n_contexts, context_size], got shape {tuple(rows.shape)}.")
    return rows.long()


class ModelActivationSource:
    """Activations of a HookedTransformer at ``hook_name`` on fixed pre-tokenised contexts.

    ``tokens``: a ``[n, context]`` tensor, a list of rows, or a datasets.Dataset with an ``input_ids`` or
    ``tokens`` column. ``token_strings``: per-token text; default from ``model.tokenizer``.
    ``token_filter``: positions it drops never count as firing (default: the special tokens
    ``excluded_token_ids``, else the tokenizer's, e.g. BOS, and massive-activation outliers, whose huge
    residual norms would otherwise top every latent's examples).
    The forward pass stops after the hook's layer (SAELens's ``extract_stop_at_layer_from_tlens_hook_name``).
    """

    def __init__(
        self,
        model: Any,
        tokens: torch.Tensor | Iterable[Sequence[int]] | Any,
        hook_name: str,
        token_strings: Callable[[Sequence[int]], list[str]] | None = None,
        excluded_token_ids: Sequence[int] | None = None,
        token_filter: TokenFilter | None = None,
    ) -> None:
        from sae_lens.util import extract_stop_at_layer_from_tlens_hook_name

        self.model = model
        self.tokens = _token_rows(tokens)
        self.hook_name = hook_name
        self.stop_at_layer = extract_stop_at_layer_from_tlens_hook_name(hook_name)
        if token_strings is None:
            tokenizer = getattr(model, "tokenizer", None)
            if tokenizer is None:
                raise ValueError(
                    "ModelActivationSource: the model has no tokenizer; pass token_strings= "
                    "(e.g. wsae_lens.autointerp.byte_token_strings for a byte vocabulary)."
                )
            token_strings = tokenizer_token_strings(tokenizer)
        self._token_strings = token_strings
        self.token_filter = _default_filter(getattr(model, "tokenizer", None), excluded_token_ids, token_filter)

    def token_batches(self, n_contexts: int, batch_size: int) -> Iterator[torch.Tensor]:
        rows = self.tokens[:n_contexts]
        for start in range(0, len(rows), batch_size):
            yield rows[start : start + batch_size]

    @torch.no_grad()
    def activations(self, tokens: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        _, cache = self.model.run_with_cache(
            tokens.to(device), names_filter=[self.hook_name], stop_at_layer=self.stop_at_layer, prepend_bos=False
        )
        return cache[self.hook_name]

    def token_strings(self, token_ids: Sequence[int]) -> list[str]:
        return self._token_strings(token_ids)


class ActivationsStoreSource:
    """Contexts and activations from a SAELens ``ActivationsStore`` (its ``get_batch_tokens``/``get_activations``).

    ``excluded_token_ids`` and ``token_filter`` as for ``ModelActivationSource``."""

    def __init__(
        self,
        store: Any,
        token_strings: Callable[[Sequence[int]], list[str]] | None = None,
        excluded_token_ids: Sequence[int] | None = None,
        token_filter: TokenFilter | None = None,
    ) -> None:
        if tuple(store.seqpos_slice) not in ((None,), (None, None), (0, None)):
            raise ValueError(
                f"ActivationsStoreSource needs activations at every position; the store has "
                f"seqpos_slice={store.seqpos_slice}. Build the store with seqpos_slice=(None,)."
            )
        self.store = store
        if token_strings is None:
            tokenizer = getattr(store.model, "tokenizer", None)
            if tokenizer is None:
                raise ValueError("ActivationsStoreSource: the store's model has no tokenizer; pass token_strings=.")
            token_strings = tokenizer_token_strings(tokenizer)
        self._token_strings = token_strings
        self.token_filter = _default_filter(getattr(store.model, "tokenizer", None), excluded_token_ids, token_filter)

    def token_batches(self, n_contexts: int, batch_size: int) -> Iterator[torch.Tensor]:
        produced = 0
        while produced < n_contexts:
            size = min(batch_size, n_contexts - produced)
            try:
                batch = self.store.get_batch_tokens(size, raise_at_epoch_end=True)
            except StopIteration:
                return
            produced += len(batch)
            yield batch

    def activations(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.store.get_activations(tokens)

    def token_strings(self, token_ids: Sequence[int]) -> list[str]:
        return self._token_strings(token_ids)


@dataclass
class Example:
    """One context window: token texts, the latent's activation on each, and where it came from."""

    context_index: int
    start: int
    tokens: list[str]
    activations: list[float]
    quantile: int | None = None  # quantile bin (0 = weakest) for held-out activating examples

    @property
    def max_activation(self) -> float:
        return max(self.activations, default=0.0)

    def firing_positions(self, threshold: float = 0.0) -> list[int]:
        return [i for i, a in enumerate(self.activations) if a > threshold]


@dataclass
class LatentRecord:
    """Everything the explainer and scorers see about one latent (see the module docstring)."""

    latent: int
    explanation_examples: list[Example]
    activating_examples: list[Example]
    non_activating_examples: list[Example]
    activation_quantiles: dict[str, float] = field(default_factory=dict)
    firing_rate: float = 0.0
    n_activating_contexts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ScanResult:
    """The first pass over the source: tokens, per-context maxima ``[n, d_sae]`` and token firing counts."""

    tokens: torch.Tensor
    context_max: torch.Tensor
    firing_counts: torch.Tensor

    @property
    def live_latents(self) -> torch.Tensor:
        return torch.nonzero(self.context_max.max(0).values > 0).flatten()


def check_activation_width(sae: Any, activations: torch.Tensor, source: Any = None) -> None:
    """Raise ``ValueError`` when ``activations`` are not ``[..., sae.cfg.d_in]``: the SAE was trained on
    another model or hook than the source reads (an incompatible SAE/activation pair)."""
    d_in = getattr(getattr(sae, "cfg", None), "d_in", None)
    if d_in is not None and activations.shape[-1] != d_in:
        hook = getattr(source, "hook_name", None)
        raise ValueError(
            f"the SAE reads d_in={d_in} activations but the source gives width {activations.shape[-1]}"
            + (f" at {hook}" if hook else "")
            + ": read activations of the model and hook the SAE was trained on (its cfg.json metadata)."
        )


def _encode(sae: Any, activations: torch.Tensor, tokens: torch.Tensor, token_filter: TokenFilter) -> torch.Tensor:
    """Latent activations ``[batch, context, d_sae]``, zero at positions ``token_filter`` drops."""
    check_activation_width(sae, activations)
    parameter = next(sae.parameters())
    latent_acts = sae.encode(activations.to(device=parameter.device, dtype=parameter.dtype)).float().cpu()
    if latent_acts.shape[:2] == tokens.shape:
        keep = token_filter.keep_mask(activations.reshape(-1, activations.shape[-1]), tokens.reshape(-1).to(activations.device))
        latent_acts[~keep.reshape(tokens.shape).cpu()] = 0.0
    return latent_acts


@torch.no_grad()
def scan_source(sae: Any, source: ActivationSource, cfg: AutoInterpConfig, threshold: float | None = None) -> ScanResult:
    """First pass: encode ``cfg.n_contexts`` contexts; keep tokens, per-context max activation per latent."""
    threshold = cfg.activation_threshold if threshold is None else threshold
    token_chunks, max_chunks = [], []
    firing_counts: torch.Tensor | None = None
    progress = tqdm(total=cfg.n_contexts, desc="autointerp: scanning contexts", unit="ctx", leave=False)
    token_filter = source_token_filter(source)
    for tokens in source.token_batches(cfg.n_contexts, cfg.batch_size):
        activations = source.activations(tokens)
        check_activation_width(sae, activations, source)
        latent_acts = _encode(sae, activations, tokens, token_filter)
        if latent_acts.shape[:2] != tokens.shape:
            raise ValueError(
                f"activation source returned activations of shape {tuple(latent_acts.shape[:2])} for tokens of "
                f"shape {tuple(tokens.shape)}; activations must be aligned with tokens position by position."
            )
        token_chunks.append(tokens.cpu())
        max_chunks.append(latent_acts.max(1).values)
        counts = (latent_acts > threshold).sum((0, 1))
        firing_counts = counts if firing_counts is None else firing_counts + counts
        progress.update(len(tokens))
    progress.close()
    if not token_chunks:
        raise ValueError("the activation source yielded no contexts; give it token rows (n_contexts >= 1).")
    return ScanResult(torch.cat(token_chunks), torch.cat(max_chunks), firing_counts)


def choose_latents(scan: ScanResult, n_latents: int, seed: int, threshold: float = 0.0) -> list[int]:
    """``n_latents`` latents drawn uniformly at random (seeded) among latents firing on >= 1 context."""
    live = torch.nonzero(scan.context_max.max(0).values > threshold).flatten()
    if len(live) == 0:
        raise ValueError("no latent fires on the scanned contexts: scan more contexts (n_contexts) or check the SAE.")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(live), generator=generator)[:n_latents]
    return sorted(live[order].tolist())


def activation_quantiles(values: torch.Tensor) -> dict[str, float]:
    """Quantiles (``QUANTILE_LEVELS``) of a latent's per-context maximum activation where it fires."""
    if values.numel() == 0:
        return {}
    q = torch.quantile(values.float(), torch.tensor(QUANTILE_LEVELS))
    return {f"q{level:g}": float(v) for level, v in zip(QUANTILE_LEVELS, q)}


def _plan_latent(
    context_max: torch.Tensor, cfg: AutoInterpConfig, generator: torch.Generator
) -> tuple[list[int], list[tuple[int, int]], list[int]]:
    """Context indices for one latent: explanation (top), held-out (index, quantile bin), negatives."""
    threshold = cfg.activation_threshold
    activating = torch.nonzero(context_max > threshold).flatten()
    ranked = activating[torch.argsort(context_max[activating], descending=True, stable=True)]
    explanation = ranked[: cfg.n_explanation_examples].tolist()
    remaining = ranked[cfg.n_explanation_examples :].flip(0)  # weakest first
    held_out: list[tuple[int, int]] = []
    if len(remaining) and cfg.n_examples_per_quantile:
        bins = torch.tensor_split(remaining, min(cfg.n_quantiles, len(remaining)))
        for bin_index, members in enumerate(bins):
            pick = torch.randperm(len(members), generator=generator)[: cfg.n_examples_per_quantile]
            held_out.extend((int(members[i]), bin_index) for i in pick)
    silent = torch.nonzero(context_max <= threshold).flatten()
    pick = torch.randperm(len(silent), generator=generator)[: cfg.n_non_activating]
    negatives = silent[pick].tolist()
    return explanation, held_out, negatives


def _window(center: int, length: int, cfg: AutoInterpConfig) -> tuple[int, int]:
    start = max(0, center - cfg.window_left)
    return start, min(length, center + cfg.window_right + 1)


@torch.no_grad()
def build_latent_records(
    sae: Any,
    source: ActivationSource,
    cfg: AutoInterpConfig,
    latents: Sequence[int] | None = None,
    scan: ScanResult | None = None,
) -> list[LatentRecord]:
    """Latent records for ``latents`` (default: ``cfg.n_latents`` drawn at random among live latents).

    ``scan`` reuses a first pass (``scan_source``) over the same SAE and source.
    """
    scan = scan_source(sae, source, cfg) if scan is None else scan
    d_sae = scan.context_max.shape[1]
    if latents is None:
        latents = choose_latents(scan, cfg.n_latents, cfg.seed, cfg.activation_threshold)
    bad = [j for j in latents if not 0 <= j < d_sae]
    if bad:
        raise ValueError(f"latents {bad} are out of range for an SAE with d_sae={d_sae}.")
    token_filter = source_token_filter(source)
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    plans = {j: _plan_latent(scan.context_max[:, j], cfg, generator) for j in latents}

    needed = sorted({c for plan in plans.values() for c in plan[0] + [c for c, _ in plan[1]] + plan[2]})
    latent_index = torch.tensor(list(latents), dtype=torch.long)
    per_token: dict[int, torch.Tensor] = {}  # context -> [context_size, len(latents)]
    for start in range(0, len(needed), cfg.batch_size):
        chunk = needed[start : start + cfg.batch_size]
        tokens = scan.tokens[chunk]
        acts = _encode(sae, source.activations(tokens), tokens, token_filter)[:, :, latent_index]
        per_token.update(zip(chunk, acts))

    n_tokens = scan.tokens.numel()
    records = []
    for column, latent in enumerate(latents):
        explanation, held_out, negatives = plans[latent]

        def example(context: int, quantile: int | None = None, center: int | None = None) -> Example:
            acts = per_token[context][:, column]
            if center is None:
                center = int(acts.argmax())
            start, stop = _window(center, len(acts), cfg)
            ids = scan.tokens[context, start:stop].tolist()
            return Example(context, start, source.token_strings(ids), acts[start:stop].tolist(), quantile)

        negative_centers = torch.randint(0, scan.tokens.shape[1], (len(negatives),), generator=generator).tolist()
        fired = scan.context_max[:, latent]
        fired = fired[fired > cfg.activation_threshold]
        records.append(
            LatentRecord(
                latent=int(latent),
                explanation_examples=[example(c) for c in explanation],
                activating_examples=[example(c, q) for c, q in held_out],
                non_activating_examples=[example(c, center=t) for c, t in zip(negatives, negative_centers)],
                activation_quantiles=activation_quantiles(fired),
                firing_rate=float(scan.firing_counts[latent]) / n_tokens,
                n_activating_contexts=int(fired.numel()),
            )
        )
    return records

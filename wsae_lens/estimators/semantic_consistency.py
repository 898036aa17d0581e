"""Semantic consistency: the share of a dimension's activations that fall on its most common label.

Definition (WSAE, arXiv 2506.15963, the vision proxy and the paper's monosemanticity metric): with A_i
the samples on which dimension i is *active* and y_t the label of sample t,

    SC_i = max_c |{t ∈ A_i : y_t = c}| / |A_i|        (undefined, reported as NaN, when A_i = ∅).

The model-level score is the mean of SC_i over the dimensions that were active at least once (for an
SAE: over its live latents). Labels are any integer per token: class ids for images, token ids (or
next-token ids, tags) for text. Two activity rules (the paper does not pin one down):

* **norm ratio** (default, ``active_quantile=None``): normalise x_t to unit L2 norm; i is active on t
  when |x_{t,i}| / ‖x_t‖ > ε (``threshold``, default 1e-6: "non-zero"). It suits sparse codes
  (ReLU/TopK latents, post-ReLU features). On dense residual-stream dimensions, where every dimension is
  non-zero on every token, every dimension is active everywhere and SC_i is the same for all i.
* **own quantile** (``active_quantile=q``, e.g. 0.99; the config field ``weighting_active_quantile``):
  i is active on t when |x_{t,i}| > τ_i, with τ_i the q-quantile of |x_{t,i}| over the tokens (linear
  interpolation, as ``torch.quantile``). Each dimension is then active on (about) its own top (1 − q)
  share of tokens, and SC_i is the share of those tokens that carry the dimension's most common label.
  Streaming: τ is computed on the first ``calibration_tokens`` tokens of the stream (default
  :data:`DEFAULT_CALIBRATION_TOKENS`; ``None`` = all tokens), which are buffered, and then held fixed
  while every token (those first ones included) is counted. When the stream holds at most
  ``calibration_tokens`` tokens (e.g. an in-memory source), τ is the exact quantile over all of them and
  the result equals the two-pass brute-force computation. A dimension that is zero on more than a q
  share of tokens has τ_i = 0 and is active exactly where it is non-zero.

Counting is exact and memory-bounded. Counts per (dimension, label) are kept either in a dense
int32 table [n_labels, d] (used while it fits in ``max_dense_bytes``, default 256 MiB: d 768 × a
50,257-token vocabulary is 154 MiB) or, beyond that (e.g. 24,576 SAE latents), as sorted unique
(dimension, label) keys with int64 counts, compacted in bounded chunks, so memory grows with the number
of distinct (dimension, label) pairs actually seen, never with d × n_labels. Each batch is processed in
chunks of at most ``max_pairs`` candidate (token, dimension) pairs. The dense table is laid out
[label, dimension] so that a token adds its whole activity row to one contiguous table row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from wsae_lens.activations.sources import iter_activation_batches

DEFAULT_ACTIVE_THRESHOLD = 1e-6
"""Default ε: dimension i is active on sample t when |x_{t,i}| / ‖x_t‖ > ε."""

DEFAULT_CALIBRATION_TOKENS = 2**15
"""Tokens on which the per-dimension quantile thresholds τ_i of the ``active_quantile`` rule are computed."""

_LABEL_BITS = 32  # sparse key = dimension << 32 | label


@dataclass
class SemanticConsistency:
    """Per-dimension result: ``scores`` (float64 [d], NaN where never active), ``active_counts`` |A_i|,
    ``top_labels`` (most common label, −1 where never active; ties → smallest label), ``top_counts``."""

    scores: torch.Tensor
    active_counts: torch.Tensor
    top_labels: torch.Tensor
    top_counts: torch.Tensor

    @property
    def live(self) -> torch.Tensor:
        """Dimensions active at least once (bool [d])."""
        return self.active_counts > 0

    @property
    def mean(self) -> float:
        """Mean semantic consistency over live dimensions (NaN if none was ever active)."""
        live = self.live
        return float(self.scores[live].mean()) if live.any() else float("nan")


class SemanticConsistencyCounter:
    """Streaming, exact (dimension, label) co-occurrence counts for :class:`SemanticConsistency`.

    Args:
        threshold: ε of the activity test |x_{t,i}| / ‖x_t‖ > ε (used when ``thresholds`` is None).
        thresholds: per-dimension thresholds τ [d]: dimension i is active on t when |x_{t,i}| > τ_i
            (the ``active_quantile`` rule; see :func:`abs_quantile_thresholds`).
        num_labels: size of the label space (e.g. the vocabulary); inferred and grown if ``None``.
        max_dense_bytes: largest dense int32 count table allowed; beyond it, sparse counting is used.
        max_pairs: at most this many (token, dimension) candidates are expanded at once.
    """

    def __init__(
        self,
        threshold: float = DEFAULT_ACTIVE_THRESHOLD,
        num_labels: int | None = None,
        max_dense_bytes: int = 256 * 2**20,
        max_pairs: int = 2**20,
        thresholds: torch.Tensor | None = None,
    ) -> None:
        if thresholds is not None:
            thresholds = torch.as_tensor(thresholds).detach().to("cpu", torch.float64)
            if thresholds.ndim != 1 or not torch.isfinite(thresholds).all() or (thresholds < 0).any():
                raise ValueError("thresholds must be a 1-D tensor [d] of finite values >= 0 (one τ_i per dimension).")
        self.thresholds = thresholds
        if not (threshold >= 0):
            raise ValueError(f"threshold must be >= 0 (activity test |x_i|/‖x‖ > ε), got {threshold}.")
        if num_labels is not None and num_labels <= 0:
            raise ValueError(f"num_labels must be positive (or None to infer it), got {num_labels}.")
        self.threshold = threshold
        self.num_labels = num_labels
        self.max_dense_bytes = max_dense_bytes
        self.max_pairs = max_pairs
        self.n_batches = 0
        self.n_tokens = 0
        self.d: int | None = None
        self.active_counts: torch.Tensor | None = None
        self.dense: torch.Tensor | None = None  # int32 [n_labels, d]: a token adds its active row at its label
        self.sparse_keys = torch.zeros(0, dtype=torch.int64)  # sorted unique dim << 32 | label
        self.sparse_counts = torch.zeros(0, dtype=torch.int64)
        # pending (key, count) runs, written into one preallocated buffer (many small long-lived
        # tensors would fragment the heap); merged into the sorted table when it fills
        self._pending_keys = torch.zeros(0, dtype=torch.int64)
        self._pending_counts = torch.zeros(0, dtype=torch.int64)
        self._pending_size = 0

    # ---- input -------------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, activations: torch.Tensor, labels: torch.Tensor, batch_index: int | None = None) -> None:
        """Count one batch: activations [tokens, d], labels [tokens] (non-negative integers)."""
        index = self.n_batches if batch_index is None else batch_index
        activations = activations.reshape(-1, activations.shape[-1]) if activations.ndim else activations
        if activations.ndim != 2:
            raise ValueError(f"batch {index}: activations must be [tokens, d], got shape {tuple(activations.shape)}.")
        labels = torch.as_tensor(labels).reshape(-1)
        if labels.shape[0] != activations.shape[0]:
            raise ValueError(
                f"batch {index} has {labels.shape[0]} labels for {activations.shape[0]} tokens: "
                "give exactly one label per token."
            )
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"batch {index}: labels must be integers (class or token ids), got {labels.dtype}.")
        n, d = activations.shape
        if self.d is None:
            self.d = d
            self.active_counts = torch.zeros(d, dtype=torch.int64)
        elif d != self.d:
            raise ValueError(f"batch {index} has {d} dimensions but earlier batches had {self.d}.")
        if self.thresholds is not None and self.thresholds.shape[0] != d:
            raise ValueError(f"batch {index} has {d} dimensions but thresholds has {self.thresholds.shape[0]}.")
        self.n_batches += 1
        if n == 0:
            return
        x = activations.detach().to("cpu", torch.float32 if activations.dtype != torch.float64 else torch.float64)
        rows = max(1, self.max_pairs // d)
        for start in range(0, n, rows):  # checked before anything is counted; bounded temporaries
            finite = torch.isfinite(x[start : start + rows])
            if not finite.all():
                bad = torch.nonzero(~finite.all(0)).flatten()[:5].tolist()
                raise ValueError(f"batch {index} has NaN/Inf activations (first in dimensions {bad}); clean or skip that batch.")
        labels = labels.to("cpu", torch.int64)
        if labels.min() < 0 or labels.max() >= 2**31:
            raise ValueError(f"batch {index}: labels must lie in [0, 2^31), got range [{labels.min()}, {labels.max()}].")
        if self.num_labels is not None and labels.max() >= self.num_labels:
            raise ValueError(f"batch {index} has label {int(labels.max())} >= num_labels={self.num_labels}.")
        self._ensure_capacity(int(labels.max()) + 1)
        self.n_tokens += n
        for start in range(0, n, rows):
            self._count_chunk(x[start : start + rows], labels[start : start + rows])

    def _active(self, x: torch.Tensor) -> torch.Tensor:
        if self.thresholds is not None:
            return x.abs().to(torch.float64) > self.thresholds  # compared in float64, as τ was computed
        return x.abs() > self.threshold * torch.linalg.vector_norm(x, dim=1, keepdim=True)

    def _count_chunk(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        assert self.active_counts is not None and self.d is not None
        active = self._active(x)
        self.active_counts += active.sum(0)
        if self.dense is not None:
            # row-wise, contiguous: counts[y_t, :] += active[t, :]
            self.dense.index_add_(0, labels, active.to(torch.int32))
        else:
            tokens, dims = active.nonzero(as_tuple=True)
            if tokens.numel() == 0:
                return
            keys, counts = torch.unique((dims << _LABEL_BITS) | labels[tokens], return_counts=True)
            if self._pending_size + keys.numel() > self._pending_keys.numel():
                self._compact(room=keys.numel())
            end = self._pending_size + keys.numel()
            self._pending_keys[self._pending_size : end] = keys
            self._pending_counts[self._pending_size : end] = counts
            self._pending_size = end

    def _ensure_capacity(self, needed_labels: int) -> None:
        """Pick dense or sparse counting, growing the dense table when new labels appear."""
        assert self.d is not None
        if self.dense is None and (self.sparse_keys.numel() or self._pending_size or self.n_tokens):
            return  # already counting sparsely
        current = 0 if self.dense is None else self.dense.shape[0]
        if needed_labels <= current:
            return
        width = self.num_labels if self.num_labels is not None else max(needed_labels, 2 * current)
        if self.d * width * 4 > self.max_dense_bytes:
            if self.dense is not None:  # convert to sparse
                dims, labels = self.dense.t().nonzero(as_tuple=True)  # sorted by (dim, label)
                self.sparse_keys = (dims << _LABEL_BITS) | labels
                self.sparse_counts = self.dense[labels, dims].to(torch.int64)
                self.dense = None
            return
        grown = torch.zeros(width, self.d, dtype=torch.int32)
        if self.dense is not None:
            grown[:current] = self.dense
        self.dense = grown

    def _compact(self, room: int = 0) -> None:
        """Merge the pending runs into the sorted unique table (sort + segment sums), then make a
        pending buffer of max(table size / 2, max_pairs, room) entries."""
        if self._pending_size:
            keys = torch.cat([self.sparse_keys, self._pending_keys[: self._pending_size]])
            counts = torch.cat([self.sparse_counts, self._pending_counts[: self._pending_size]])
            self._pending_keys = self._pending_counts = torch.zeros(0, dtype=torch.int64)
            self._pending_size = 0
            keys, order = torch.sort(keys)
            cumulative = counts[order].cumsum(0)
            del order, counts
            unique, run_lengths = torch.unique_consecutive(keys, return_counts=True)
            del keys
            totals = cumulative[run_lengths.cumsum(0) - 1]
            self.sparse_counts = torch.diff(totals, prepend=totals.new_zeros(1))
            self.sparse_keys = unique
        capacity = max(self.sparse_keys.numel() // 2, self.max_pairs, room)
        self._pending_keys = torch.empty(capacity, dtype=torch.int64)
        self._pending_counts = torch.empty(capacity, dtype=torch.int64)

    # ---- output ------------------------------------------------------------------------------
    def result(self) -> SemanticConsistency:
        """Scores, active counts and top labels per dimension (see :class:`SemanticConsistency`)."""
        if self.d is None or self.active_counts is None or self.n_tokens == 0:
            raise ValueError("semantic consistency needs at least one token but the stream was empty.")
        d = self.d
        if self.dense is not None:
            top_labels = self.dense.argmax(dim=0)  # first maximum: ties go to the smallest label
            top_counts = self.dense.gather(0, top_labels[None, :]).squeeze(0).to(torch.int64)
        else:
            self._compact()
            dims = self.sparse_keys >> _LABEL_BITS
            labels = self.sparse_keys & ((1 << _LABEL_BITS) - 1)
            top_counts = torch.zeros(d, dtype=torch.int64).scatter_reduce_(0, dims, self.sparse_counts, "amax")
            is_top = self.sparse_counts == top_counts[dims]
            # keys are sorted, so the first top entry of each dimension has the smallest label
            top_labels = torch.full((d,), 2**62, dtype=torch.int64).scatter_reduce_(
                0, dims[is_top], labels[is_top], "amin"
            )
        live = self.active_counts > 0
        top_labels = torch.where(live, top_labels, torch.full_like(top_labels, -1))
        top_counts = torch.where(live, top_counts, torch.zeros_like(top_counts))
        scores = torch.where(
            live, top_counts.to(torch.float64) / self.active_counts.clamp(min=1), torch.tensor(float("nan"), dtype=torch.float64)
        )
        return SemanticConsistency(scores, self.active_counts.clone(), top_labels, top_counts)


@torch.no_grad()
def abs_quantile_thresholds(activations: torch.Tensor, q: float, max_elements: int = 2**24) -> torch.Tensor:
    """τ_i = the q-quantile of |x_{t,i}| over the rows t of ``activations`` [tokens, d] (float64 [d]).

    Linear interpolation between order statistics, as ``torch.quantile``: with v the sorted |x_i| and
    p = q·(N − 1), τ_i = v[⌊p⌋] + (v[⌈p⌉] − v[⌊p⌋])·(p − ⌊p⌋). Computed in column chunks of at most
    ``max_elements`` values (``torch.quantile`` refuses large inputs).
    """
    if not (0.0 < q < 1.0):
        raise ValueError(f"q must lie in (0, 1), got {q}.")
    if activations.ndim != 2 or activations.shape[0] == 0:
        raise ValueError(f"activations must be a non-empty [tokens, d] tensor, got shape {tuple(activations.shape)}.")
    n, d = activations.shape
    pos = q * (n - 1)
    lo, hi = int(pos), min(int(pos) + 1, n - 1)
    frac = pos - lo
    out = torch.empty(d, dtype=torch.float64)
    cols = max(1, max_elements // n)
    for start in range(0, d, cols):
        v = activations[:, start : start + cols].detach().to("cpu", torch.float64).abs()
        if not torch.isfinite(v).all():
            bad = (start + torch.nonzero(~torch.isfinite(v).all(0)).flatten()[:5]).tolist()
            raise ValueError(f"activations have NaN/Inf values (first in dimensions {bad}); clean or skip those tokens.")
        v = v.sort(dim=0).values
        out[start : start + cols] = v[lo] + (v[hi] - v[lo]) * frac
    return out


def _labelled_batches(source: Any, max_tokens: int | None, hook_name: str | None):
    for index, batch in enumerate(iter_activation_batches(source, max_tokens=max_tokens, hook_name=hook_name)):
        if batch.labels is None:
            raise ValueError(
                f"batch {index} has no labels: semantic consistency needs (activations, labels) pairs, an "
                "ActivationsStore, or a cached-activations directory with token_ids."
            )
        yield index, batch


class SemanticConsistencyStream:
    """Push-based :func:`estimate_semantic_consistency`: ``update(activations, labels)`` per batch, then
    ``result()``. With ``active_quantile`` the first ``calibration_tokens`` tokens are buffered until τ
    is fixed (or until ``result()`` when the stream is shorter), exactly as the pull-based function."""

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_ACTIVE_THRESHOLD,
        active_quantile: float | None = None,
        calibration_tokens: int | None = DEFAULT_CALIBRATION_TOKENS,
        num_labels: int | None = None,
        **counter_kwargs: Any,
    ) -> None:
        if active_quantile is not None and not (0.0 < active_quantile < 1.0):
            raise ValueError(f"active_quantile must lie in (0, 1) or be None, got {active_quantile}.")
        if calibration_tokens is not None and calibration_tokens < 1:
            raise ValueError(f"calibration_tokens must be >= 1 or None (all tokens), got {calibration_tokens}.")
        self.active_quantile = active_quantile
        self.calibration_tokens = calibration_tokens
        self.counter_options = dict(threshold=threshold, num_labels=num_labels, **counter_kwargs)
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.buffered = 0
        self.n_batches = 0
        self.counter = SemanticConsistencyCounter(**self.counter_options) if active_quantile is None else None

    def update(self, activations: torch.Tensor, labels: torch.Tensor, batch_index: int | None = None) -> None:
        """Count one batch (buffered while τ is still being calibrated)."""
        index = self.n_batches if batch_index is None else batch_index
        self.n_batches += 1
        if self.counter is not None:
            self.counter.update(activations, labels, batch_index=index)
            return
        self.pending.append((index, activations, labels))
        self.buffered += activations.reshape(-1, activations.shape[-1]).shape[0]
        if self.calibration_tokens is not None and self.buffered >= self.calibration_tokens:
            self._calibrate()

    def _calibrate(self) -> None:
        """Fix τ on the buffered tokens, then count the buffered batches, releasing each."""
        if not self.pending:
            raise ValueError("semantic consistency needs at least one token but the stream was empty.")
        assert self.active_quantile is not None
        calibration = torch.cat([a.reshape(-1, a.shape[-1]).detach().cpu() for _, a, _ in self.pending])
        thresholds = abs_quantile_thresholds(calibration[: self.calibration_tokens], self.active_quantile)
        del calibration
        self.counter = SemanticConsistencyCounter(thresholds=thresholds, **self.counter_options)
        while self.pending:
            index, activations, labels = self.pending.pop(0)
            self.counter.update(activations, labels, batch_index=index)

    def result(self) -> SemanticConsistency:
        if self.counter is None:
            self._calibrate()
        assert self.counter is not None
        return self.counter.result()


def estimate_semantic_consistency(
    source: Any,
    *,
    max_tokens: int | None = None,
    threshold: float = DEFAULT_ACTIVE_THRESHOLD,
    active_quantile: float | None = None,
    calibration_tokens: int | None = DEFAULT_CALIBRATION_TOKENS,
    num_labels: int | None = None,
    hook_name: str | None = None,
    progress: bool = True,
    **counter_kwargs: Any,
) -> SemanticConsistency:
    """Per-dimension semantic consistency of a stream of (activations, labels) (see module docstring).

    ``active_quantile=None`` uses the norm-ratio rule with ε = ``threshold``; a q in (0, 1) uses the
    own-quantile rule, τ computed on the first ``calibration_tokens`` tokens (None: all tokens, exact).
    """
    stream = SemanticConsistencyStream(threshold=threshold, active_quantile=active_quantile,
                                       calibration_tokens=calibration_tokens, num_labels=num_labels, **counter_kwargs)
    bar = tqdm(total=max_tokens, desc="Estimating semantic consistency", unit="tok", disable=not progress)
    for index, batch in _labelled_batches(source, max_tokens, hook_name):
        stream.update(batch.activations, batch.labels, batch_index=index)
        bar.update(batch.activations.shape[0])
    bar.close()
    return stream.result()


@torch.no_grad()
def latent_semantic_consistency(
    sae: Any,
    source: Any,
    *,
    max_tokens: int | None = None,
    threshold: float = DEFAULT_ACTIVE_THRESHOLD,
    num_labels: int | None = None,
    hook_name: str | None = None,
    progress: bool = True,
    encode_elements: int = 2**24,
    **counter_kwargs: Any,
) -> SemanticConsistency:
    """Semantic consistency of an SAE's latents (the WSAE paper's monosemanticity metric).

    Each batch of input activations is encoded with ``sae.encode`` in chunks of at most
    ``encode_elements`` latent values (64 MiB in float32); the result's ``mean`` is the mean over live
    latents (latents active at least once in the stream). With ``d_sae × num_labels`` beyond
    ``max_dense_bytes`` the counts are sparse: memory grows with the distinct (latent, label) pairs seen
    (16 bytes each), at most k × tokens for a TopK SAE.
    """
    counter = SemanticConsistencyCounter(threshold=threshold, num_labels=num_labels, **counter_kwargs)
    bar = tqdm(total=max_tokens, desc="Latent semantic consistency", unit="tok", disable=not progress)
    rows = max(1, encode_elements // sae.cfg.d_sae)  # bound the dense [rows, d_sae] latent tensor
    for index, batch in _labelled_batches(source, max_tokens, hook_name):
        for start in range(0, batch.activations.shape[0], rows):
            chunk = batch.activations[start : start + rows].to(device=sae.device, dtype=sae.dtype)
            counter.update(sae.encode(chunk), batch.labels[start : start + rows], batch_index=index)
        bar.update(batch.activations.shape[0])
    bar.close()
    return counter.result()

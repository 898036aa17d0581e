"""Per-dimension variance of a stream of activations: the WSAE variance proxy (arXiv 2506.15963).

Streaming moments in float64: each batch contributes its count n_b, mean μ_b and centred sum of
squares M2_b = Σ_t (x_t − μ_b)² (two passes over the batch, exact in float64), and partial results are
combined with Chan et al.'s pairwise formula

    n = n_a + n_b,   δ = μ_b − μ_a,   μ = μ_a + δ·n_b/n,   M2 = M2_a + M2_b + δ²·n_a·n_b/n,

which is order-independent up to rounding and numerically stable (no E[x²] − E[x]² cancellation).
Memory is O(d_in). When ``torch.distributed`` is initialised, :meth:`StreamingMoments.all_reduce`
gathers every rank's partial moments and merges them in rank order, so all ranks hold the same result.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm


class StreamingMoments:
    """Running count, mean and centred sum of squares (M2) per dimension, accumulated in float64.

    ``update(batch)`` takes a tensor whose last dimension is d_in (leading dimensions are flattened
    into tokens); ``merge(other)`` combines two partial results (Chan's formula);
    ``variance(unbiased=True)`` returns M2 / (n − 1) (or M2 / n).
    """

    def __init__(self, d_in: int | None = None, device: torch.device | str | None = None) -> None:
        self.count = 0
        self.n_batches = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None
        if d_in is not None:
            self._allocate(d_in, torch.device(device) if device is not None else torch.device("cpu"))

    def _allocate(self, d_in: int, device: torch.device) -> None:
        self.mean = torch.zeros(d_in, dtype=torch.float64, device=device)
        self.m2 = torch.zeros(d_in, dtype=torch.float64, device=device)

    @property
    def d_in(self) -> int | None:
        return None if self.mean is None else self.mean.shape[0]

    @torch.no_grad()
    def update(self, batch: torch.Tensor, batch_index: int | None = None) -> StreamingMoments:
        """Add a batch of activations ([..., d_in]); returns self.

        Raises ``ValueError`` naming the batch (``batch_index``, default: the number of batches seen
        so far) if it holds NaN/Inf or its width differs from earlier batches.
        """
        index = self.n_batches if batch_index is None else batch_index
        if not isinstance(batch, torch.Tensor):
            raise TypeError(f"batch {index} is a {type(batch).__name__}; expected a torch.Tensor [tokens, d_in].")
        if batch.ndim == 0:
            raise ValueError(f"batch {index} is a scalar; expected a tensor [tokens, d_in].")
        flat = batch.reshape(-1, batch.shape[-1])
        if self.mean is None:
            self._allocate(flat.shape[1], flat.device)
        assert self.mean is not None and self.m2 is not None
        if flat.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"batch {index} has {flat.shape[1]} dimensions but earlier batches had {self.mean.shape[0]}: "
                "every batch must have the same d_in (last dimension)."
            )
        n_b = flat.shape[0]
        self.n_batches += 1
        if n_b == 0:
            return self
        x = flat.to(device=self.mean.device, dtype=torch.float64)
        mean_b = x.sum(0).div_(n_b)
        if not torch.isfinite(mean_b).all():
            bad = torch.nonzero(~torch.isfinite(flat).all(0)).flatten()[:5].tolist()
            raise ValueError(
                f"batch {index} has NaN/Inf activations (first in dimensions {bad}); clean or skip that batch."
            )
        m2_b = (x - mean_b).square_().sum(0)
        self._combine(n_b, mean_b, m2_b)
        return self

    def _combine(self, n_b: int, mean_b: torch.Tensor, m2_b: torch.Tensor) -> None:
        assert self.mean is not None and self.m2 is not None
        n_a = self.count
        n = n_a + n_b
        delta = mean_b.to(self.mean.device) - self.mean
        self.mean.add_(delta * (n_b / n))
        self.m2.add_(m2_b.to(self.m2.device)).add_(delta.square_() * (n_a * n_b / n))
        self.count = n

    def merge(self, other: StreamingMoments) -> StreamingMoments:
        """Fold another partial result into this one (Chan's pairwise formula); returns self."""
        if other.mean is None or other.count == 0:
            self.n_batches += other.n_batches
            return self
        assert other.m2 is not None
        if self.mean is None:
            self._allocate(other.mean.shape[0], other.mean.device)
        assert self.mean is not None
        if other.mean.shape != self.mean.shape:
            raise ValueError(
                f"cannot merge moments of {other.mean.shape[0]} dimensions into {self.mean.shape[0]} dimensions."
            )
        self.n_batches += other.n_batches
        self._combine(other.count, other.mean, other.m2)
        return self

    def variance(self, unbiased: bool = True) -> torch.Tensor:
        """Per-dimension variance, float64 [d_in]: M2 / (n − 1) if ``unbiased`` else M2 / n."""
        min_count = 2 if unbiased else 1
        if self.m2 is None or self.count < min_count:
            raise ValueError(
                f"variance needs at least {min_count} token(s) but the stream gave {self.count}: "
                "the source was empty (or max_tokens too small)."
            )
        return self.m2 / (self.count - 1 if unbiased else self.count)

    def all_reduce(self, group: Any = None) -> StreamingMoments:
        """Merge the partial moments of every rank (when torch.distributed is initialised); returns self.

        Every rank must call it. Ranks are merged in rank order, so all ranks end with the same result.
        A no-op when torch.distributed is not initialised.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return self
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else "cpu"
        d_in = torch.tensor([-1 if self.d_in is None else self.d_in], device=device)
        dims = [torch.zeros_like(d_in) for _ in range(dist.get_world_size(group))]
        dist.all_gather(dims, d_in, group=group)
        widths = {int(t.item()) for t in dims} - {-1}
        if len(widths) > 1:
            raise ValueError(f"ranks saw different d_in values {sorted(widths)}; every rank must stream the same hook.")
        if not widths:
            return self
        width = widths.pop()
        packed = torch.zeros(2 * width + 1, dtype=torch.float64, device=device)
        if self.mean is not None:
            assert self.m2 is not None
            packed[0] = self.count
            packed[1 : width + 1] = self.mean.to(device)
            packed[width + 1 :] = self.m2.to(device)
        gathered = [torch.zeros_like(packed) for _ in range(dist.get_world_size(group))]
        dist.all_gather(gathered, packed, group=group)
        home = self.mean.device if self.mean is not None else torch.device("cpu")
        merged = StreamingMoments(width, device=home)
        for part in gathered:
            count = int(part[0].item())
            if count:
                merged._combine(count, part[1 : width + 1].to(home), part[width + 1 :].to(home))
        self.count, self.mean, self.m2 = merged.count, merged.mean, merged.m2
        return self


def estimate_variance(
    source: Any,
    *,
    max_tokens: int | None = None,
    progress: bool = True,
    unbiased: bool = True,
) -> torch.Tensor:
    """Per-dimension variance of the activations in ``source`` (float64 [d_in]).

    ``source`` is anything :func:`wsae_lens.activations.iter_activation_batches` accepts: an
    iterable of [tokens, d_in] tensors, a SAELens ``ActivationsStore`` or a cached-activations
    directory. At most ``max_tokens`` tokens are read. Under ``torch.distributed`` the result is the
    variance over every rank's tokens.
    """
    from wsae_lens.activations.sources import iter_activation_batches

    moments = StreamingMoments()
    bar = tqdm(total=max_tokens, desc="Estimating variance", unit="tok", disable=not progress)
    for index, batch in enumerate(iter_activation_batches(source, max_tokens=max_tokens)):
        moments.update(batch.activations, batch_index=index)
        bar.update(batch.activations.shape[0])
    bar.close()
    moments.all_reduce()
    return moments.variance(unbiased=unbiased)

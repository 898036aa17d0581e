"""The token filter: which tokens' activations reach Γ estimation, training and evaluation.

Language models put enormous values on a few tokens: the BOS and other attention sinks carry
"massive activations" (Sun et al. 2024, arXiv 2402.17762). On the embedded SmolLM2-135M at
``blocks.15.hook_resid_post`` the BOS has norm ≈ 25,000 against a median token norm of 171, and after
special tokens are removed 0.025% of tokens still exceed 10× the median; those few tokens decide a
variance-based Γ, the MSE and the explained variance, and splicing an SAE into them breaks attention.

:class:`TokenFilter` keeps token t unless

* its id is a special token (the ids SAELens's ``exclude_special_tokens`` lists), or
* ‖x_t‖₂ > C · m, the outlier rule, with C = ``outlier_norm_ratio`` (default 10; ``None`` turns the
  rule off) and m the median token norm, fitted once on the first batch the filter sees (after special
  tokens are removed) and fixed from then on, so that every road applies the same threshold.

The fitted threshold is recorded in the saved SAE's ``cfg.json`` (``metadata.token_filter``) and read
back by :meth:`TokenFilter.from_metadata`, so evaluation of a saved SAE filters exactly as training did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

DEFAULT_OUTLIER_NORM_RATIO = 10.0
"""C in ‖x_t‖ > C · median norm: measured on SmolLM2 (sae-practice.md), 10× drops 0.025% of tokens."""

METADATA_KEY = "token_filter"
"""Key of the filter's record in ``sae.cfg.metadata`` (saved in ``cfg.json``)."""


@dataclass
class FilterCounts:
    """Tokens seen and dropped by a :class:`TokenFilter` (special tokens, outliers)."""

    seen: int = 0
    special: int = 0
    outliers: int = 0

    @property
    def dropped(self) -> int:
        return self.special + self.outliers

    def describe(self) -> str:
        """One line for progress output and reports."""
        share = self.dropped / self.seen if self.seen else 0.0
        return (f"dropped {self.dropped:,} of {self.seen:,} tokens ({share:.3%}): "
                f"{self.special:,} special, {self.outliers:,} outliers")


@dataclass
class TokenFilter:
    """Drop special tokens and massive-activation outliers (see the module docstring).

    ``special_token_ids``: ids to drop (``None``: none). ``outlier_norm_ratio``: C (``None``: keep every
    norm). ``median_norm``: m; ``None`` until fitted on the first batch :meth:`keep_mask` sees.
    """

    special_token_ids: torch.Tensor | None = None
    outlier_norm_ratio: float | None = DEFAULT_OUTLIER_NORM_RATIO
    median_norm: float | None = None
    counts: FilterCounts = field(default_factory=FilterCounts)

    def __post_init__(self) -> None:
        ratio = self.outlier_norm_ratio
        if ratio is not None and not (math.isfinite(ratio) and ratio > 1):
            raise ValueError(
                f"outlier_norm_ratio must be a finite number > 1 (tokens above ratio × median norm are dropped), "
                f"or None to keep every token; got {ratio}."
            )
        if self.special_token_ids is not None:
            self.special_token_ids = torch.as_tensor(self.special_token_ids, dtype=torch.long).reshape(-1)

    @classmethod
    def keep_all(cls) -> TokenFilter:
        """A filter that keeps every token."""
        return cls(special_token_ids=None, outlier_norm_ratio=None)

    @property
    def norm_threshold(self) -> float | None:
        """C · m, or ``None`` when the outlier rule is off or not fitted yet."""
        if self.outlier_norm_ratio is None or self.median_norm is None:
            return None
        return self.outlier_norm_ratio * self.median_norm

    @torch.no_grad()
    def keep_mask(self, activations: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Boolean [tokens] mask of the tokens to keep (``activations`` is [tokens, d_in]); counts them."""
        keep = torch.ones(activations.shape[0], dtype=torch.bool, device=activations.device)
        if token_ids is not None and self.special_token_ids is not None and self.special_token_ids.numel():
            keep &= ~torch.isin(token_ids, self.special_token_ids.to(token_ids.device))
        special = int((~keep).sum())
        outliers = 0
        if self.outlier_norm_ratio is not None:
            norms = activations.float().norm(dim=-1)
            if self.median_norm is None:
                self._fit_median(norms, keep)
            if self.median_norm is not None:
                too_large = keep & (norms > self.outlier_norm_ratio * self.median_norm)
                outliers = int(too_large.sum())
                keep &= ~too_large
        self.counts.seen += activations.shape[0]
        self.counts.special += special
        self.counts.outliers += outliers
        return keep

    @torch.no_grad()
    def fit(self, activations: torch.Tensor, token_ids: torch.Tensor | None = None) -> None:
        """Fix the median norm m on this batch (special tokens left out) if it is not set yet; counts nothing."""
        if self.outlier_norm_ratio is None or self.median_norm is not None:
            return
        keep = torch.ones(activations.shape[0], dtype=torch.bool, device=activations.device)
        if token_ids is not None and self.special_token_ids is not None and self.special_token_ids.numel():
            keep &= ~torch.isin(token_ids, self.special_token_ids.to(token_ids.device))
        self._fit_median(activations.float().norm(dim=-1), keep)

    def _fit_median(self, norms: torch.Tensor, keep: torch.Tensor) -> None:
        if bool(keep.any()):
            self.median_norm = float(norms[keep].median())

    def apply(
        self, activations: torch.Tensor, token_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The kept rows of ``activations`` [tokens, d_in] and of ``token_ids`` [tokens]."""
        keep = self.keep_mask(activations, token_ids)
        if bool(keep.all()):
            return activations, token_ids
        return activations[keep], None if token_ids is None else token_ids[keep]

    def to_metadata(self) -> dict[str, Any]:
        """The filter as recorded in ``cfg.json`` (``metadata.token_filter``)."""
        return {
            "special_token_ids": None if self.special_token_ids is None else self.special_token_ids.tolist(),
            "outlier_norm_ratio": self.outlier_norm_ratio,
            "median_norm": self.median_norm,
            "norm_threshold": self.norm_threshold,
        }

    @classmethod
    def from_metadata(cls, record: dict[str, Any] | None) -> TokenFilter | None:
        """The filter recorded by :meth:`to_metadata` (``None`` if ``record`` is ``None``)."""
        if record is None:
            return None
        return cls(
            special_token_ids=record.get("special_token_ids"),
            outlier_norm_ratio=record.get("outlier_norm_ratio"),
            median_norm=record.get("median_norm"),
        )

    def record_in(self, sae: Any) -> None:
        """Write :meth:`to_metadata` into ``sae.cfg.metadata`` so that ``cfg.json`` saves it."""
        sae.cfg.metadata[METADATA_KEY] = self.to_metadata()

    @classmethod
    def recorded_in(cls, sae: Any) -> TokenFilter | None:
        """The filter an SAE was trained with (``None`` if its cfg.json records none)."""
        return cls.from_metadata(sae.cfg.metadata.get(METADATA_KEY))


def special_token_ids(tokenizer: Any) -> torch.Tensor:
    """The token ids SAELens's ``exclude_special_tokens=True`` removes (BOS, EOS, PAD, ...)."""
    from sae_lens.util import get_special_token_ids

    ids = sorted(get_special_token_ids(tokenizer)) if tokenizer is not None else []
    return torch.tensor(ids, dtype=torch.long)


def default_token_filter(tokenizer: Any = None, outlier_norm_ratio: float | None = DEFAULT_OUTLIER_NORM_RATIO) -> TokenFilter:
    """The policy for real-model activations: the tokenizer's special tokens and the outlier rule."""
    return TokenFilter(special_token_ids=special_token_ids(tokenizer), outlier_norm_ratio=outlier_norm_ratio)

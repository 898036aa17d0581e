"""The one road for activations: sources → :class:`TokenFilter` → [tokens, d_in] batches with token ids.

* :func:`iter_activation_batches`: tensors, a SAELens ``ActivationsStore``, a cached-activations
  directory, or :func:`model_activation_batches` (a model + token rows), filtered.
* :class:`TokenFilter`: special tokens and massive-activation outliers (arXiv 2402.17762), fitted once,
  recorded in ``cfg.json``.
* :class:`FilteredActivationsStore`: the same filter on SAELens's training road.
"""

from wsae_lens.activations.filtering import (
    DEFAULT_OUTLIER_NORM_RATIO,
    FilterCounts,
    TokenFilter,
    default_token_filter,
    special_token_ids,
)
from wsae_lens.activations.sources import (
    ActivationBatch,
    TokenCounter,
    hook_layer,
    iter_activation_batches,
    model_activation_batches,
    source_token_filter,
)
from wsae_lens.activations.store import FilteredActivationsStore, store_token_filter

__all__ = [
    "ActivationBatch",
    "DEFAULT_OUTLIER_NORM_RATIO",
    "FilterCounts",
    "FilteredActivationsStore",
    "TokenCounter",
    "TokenFilter",
    "default_token_filter",
    "hook_layer",
    "iter_activation_batches",
    "model_activation_batches",
    "source_token_filter",
    "special_token_ids",
    "store_token_filter",
]

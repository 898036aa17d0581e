"""Before the first multi-SAE step: fit the token filters, estimate every weighted SAE's Γ and set b_dec,
all in ONE pass over the first tokens of the data.

The pass reads LLM batches (every hook from one forward) from a fresh store over the same config (the
training store is untouched) until each hook has given the tokens its SAEs need: for a weighted SAE
:func:`~wsae_lens.estimators.entry.weighting_token_budget` of its ``weighting_tokens`` (its own
weighting, α, transform: one :class:`~wsae_lens.estimators.entry.SAEGammaStream` per SAE), for b_dec the
first :data:`~wsae_lens.training.B_DEC_INIT_TOKENS` kept tokens (b_dec ← their mean). Each hook's filter
is applied on its own, so every SAE sees exactly the tokens a single-SAE run on its hook would see: its Γ
equals :func:`~wsae_lens.estimators.estimate_sae_gamma` on that hook. With ``distribute_saes`` the
filtered rows of every rank are sent to the owners (the global stream, in rank order) and the filters'
median norms are fitted on rank 0's first batch and broadcast, so all ranks drop the same tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from wsae_lens.activations import ActivationBatch, TokenFilter
from wsae_lens.architectures.weighting import ESTIMATED_WEIGHTINGS, GammaMixin
from wsae_lens.estimators.entry import SAEGammaStream
from wsae_lens.multi.placement import SAEPlacement
from wsae_lens.training import B_DEC_INIT_TOKENS, checkpoint_gamma, init_b_dec, norm_scaling_factor


def needs_gamma(sae: Any) -> bool:
    """A weighted SAE whose weighting is estimated from activations and whose Γ is not set yet."""
    return isinstance(sae, GammaMixin) and sae.cfg.weighting in ESTIMATED_WEIGHTINGS and not sae.gamma_ready


def restore_gammas(saes: dict[str, Any], checkpoint: str | Path) -> None:
    """On resume: each weighted SAE takes the Γ saved in ``checkpoint/<name>/`` (not estimated again)."""
    for name, sae in saes.items():
        if isinstance(sae, GammaMixin) and sae.cfg.weighting in ESTIMATED_WEIGHTINGS:
            gamma, fields = checkpoint_gamma(Path(checkpoint) / name)
            sae.set_gamma(gamma, weighting=fields.get("weighting", sae.cfg.weighting),
                          alpha=fields.get("weighting_alpha"), tokens=fields.get("weighting_tokens"))


def filter_hooks(activations: dict[str, torch.Tensor], token_ids: torch.Tensor, filters: dict[str, TokenFilter],
                 placement: SAEPlacement) -> dict[Any, torch.Tensor]:
    """Each hook's kept rows and their token ids (keys ``hook`` and ``(hook, "ids")``). Across ranks, filters
    not fitted yet take rank 0's median norm (fitted on its batch), so every rank applies the same rule."""
    unfitted = [h for h in activations if filters[h].median_norm is None and filters[h].outlier_norm_ratio is not None]
    masks: dict[str, torch.Tensor] = {}
    if placement.distributed and unfitted:
        if placement.context.is_main:
            masks = {h: filters[h].keep_mask(activations[h], token_ids) for h in activations}
        medians = [filters[h].median_norm for h in unfitted]
        dist.broadcast_object_list(medians, src=0)
        for h, median in zip(unfitted, medians):
            filters[h].median_norm = median
    masks = masks or {h: filters[h].keep_mask(activations[h], token_ids) for h in activations}
    kept: dict[Any, torch.Tensor] = {}
    for h, acts in activations.items():
        kept[h], kept[(h, "ids")] = acts[masks[h]], token_ids[masks[h]]
    return kept


def prepare_multi_training(runner: Any) -> None:
    """Fit the filters, estimate Γ (or restore it when resuming) and set b_dec for the runner's SAEs."""
    placement: SAEPlacement = runner.placement
    saes: dict[str, Any] = runner.saes
    filters: dict[str, TokenFilter] = runner.token_filters
    resume = runner.cfg.resume_from_checkpoint
    if resume is not None:
        restore_gammas(saes, resume)
    streams = {name: SAEGammaStream(sae, int(runner.cfg.training_tokens), merge_ranks=False)  # an owner sees the global stream
               for name, sae in saes.items() if needs_gamma(sae)}
    b_dec = [name for name in saes if resume is None and runner.init_b_dec_from_data]
    hooks = placement.hooks
    need = torch.zeros(len(hooks), dtype=torch.long)
    for name in b_dec:
        need[hooks.index(placement.hook_names[name])] = max(int(need[hooks.index(placement.hook_names[name])]), B_DEC_INIT_TOKENS)
    for name, stream in streams.items():
        index = hooks.index(placement.hook_names[name])
        need[index] = max(int(need[index]), stream.budget)
    need = placement.parallel.max_(need)
    unfitted = any(f.median_norm is None and f.outlier_norm_ratio is not None for f in filters.values())
    if int(need.max()) == 0 and not (unfitted and resume is None):
        return
    needed = {h: int(n) for h, n in zip(hooks, need)}
    read = {h: 0 for h in hooks}
    first: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    store = runner.fresh_store()
    while True:
        try:
            activations, token_ids = store.get_raw_multi_hook_batch(raise_on_epoch_end=True)
            kept: dict[Any, torch.Tensor | None] = filter_hooks(activations, token_ids, filters, placement)
        except StopIteration:  # one full pass over this rank's data
            kept = {key: None for h in hooks for key in (h, (h, "ids"))}
        wanted = {key: value for key, value in kept.items() if needed[key[0] if isinstance(key, tuple) else key] > 0}
        rows, counts = placement.exchange(wanted)
        if (counts < 0).any():
            break
        for name, stream in streams.items():
            hook = placement.hook_names[name]
            stream.update(ActivationBatch(rows[hook], rows[(hook, "ids")]))
        for hook in {placement.hook_names[name] for name in b_dec}:
            have = sum(t.shape[0] for t in first[hook])
            if have < B_DEC_INIT_TOKENS:
                first[hook].append(rows[hook][: B_DEC_INIT_TOKENS - have])
        for column, key in enumerate(wanted):
            if not isinstance(key, tuple):
                read[key] += int(counts[:, column].sum())
        if all(read[h] >= needed[h] for h in hooks):
            break
    for name in b_dec:
        sae = saes[name]
        tokens = torch.cat(first[placement.hook_names[name]]).to(sae.b_dec.device)
        normalise = sae.cfg.normalize_activations == "expected_average_only_in"
        init_b_dec(sae, tokens, norm_scaling_factor(tokens) if normalise else 1.0)
    for stream in streams.values():
        stream.finish()

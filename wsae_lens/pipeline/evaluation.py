"""Evaluating SAEs on held-out text the way they were trained: only where the token filter keeps the token.

* Reconstruction on held-out kept activations: explained variance 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖², MSE
  (mean over tokens of Σ_i (x_i − x̂_i)²), L0.
* CE-loss score (SAELens's definition) (L_zero − L_SAE) / (L_zero − L_clean), where L_SAE splices x̂ into
  the hook *only at kept positions* (special and outlier tokens pass through unchanged, so the score
  measures the SAE, not a broken attention sink, arXiv 2402.17762) and L_zero zero-ablates the same
  positions. SAELens's ``run_evals`` splices every position, hence this small evaluator; the clean and
  zero-ablated losses are computed once and shared by every SAE.
* Latent semantic consistency against token ids (:func:`wsae_lens.estimators.latent_semantic_consistency`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from wsae_lens.activations import TokenFilter, model_activation_batches
from wsae_lens.pipeline.cached_training import explained_variance


@dataclass
class HeldOutText:
    """Held-out rows [rows, context], the kept activations at the hook, their token ids, the keep mask,
    and the clean and zero-ablated per-token losses of the rows the CE-loss score uses."""

    hook_name: str
    tokens: torch.Tensor
    activations: torch.Tensor
    token_ids: torch.Tensor
    keep: torch.Tensor
    ce_rows: int
    clean_loss: float
    zero_loss: float


def _loss(model: Any, tokens: torch.Tensor, hooks: list[tuple[str, Any]], batch_prompts: int) -> float:
    losses = [model.run_with_hooks(tokens[i : i + batch_prompts], return_type="loss", loss_per_token=True,
                                   fwd_hooks=hooks).mean() for i in range(0, tokens.shape[0], batch_prompts)]
    return float(torch.stack(losses).mean())


def _splice(keep: torch.Tensor, replace: Any) -> Any:
    """A forward hook that replaces the hook's activations by ``replace(kept rows)`` at kept positions."""
    position = {"row": 0}

    def hook(activations: torch.Tensor, hook: Any) -> torch.Tensor:  # noqa: ARG001
        rows = activations.shape[0]
        mask = keep[position["row"] : position["row"] + rows].to(activations.device)
        position["row"] = (position["row"] + rows) % keep.shape[0]
        out = activations.clone()
        out[mask] = replace(activations[mask]).to(out.dtype)
        return out

    return hook


@torch.no_grad()
def prepare_held_out(model: Any, tokens: torch.Tensor, hook_name: str, token_filter: TokenFilter,
                     ce_rows: int, batch_prompts: int = 8) -> HeldOutText:
    """Run the held-out rows once: kept activations and ids for every row; clean and zero-ablated losses
    for the first ``ce_rows`` rows."""
    acts, ids = [], []
    for batch in model_activation_batches(model, tokens, hook_name, batch_prompts):
        acts.append(batch.activations)
        ids.append(batch.labels)
    all_acts, all_ids = torch.cat(acts), torch.cat(ids)
    keep = token_filter.keep_mask(all_acts, all_ids).reshape(tokens.shape)
    ce_tokens, ce_keep = tokens[:ce_rows], keep[:ce_rows]
    clean = _loss(model, ce_tokens, [], batch_prompts)
    zero = _loss(model, ce_tokens, [(hook_name, _splice(ce_keep, torch.zeros_like))], batch_prompts)
    flat_keep = keep.reshape(-1)
    return HeldOutText(hook_name, tokens, all_acts[flat_keep], all_ids[flat_keep], keep, ce_rows, clean, zero)


@torch.no_grad()
def evaluate_sae(sae: Any, model: Any, held_out: HeldOutText, batch_prompts: int = 8,
                 consistency: bool = True) -> dict[str, float]:
    """Explained variance, MSE, L0, CE-loss score (spliced at kept positions), held-out dead fraction and
    latent semantic consistency of a saved (inference) SAE on :class:`HeldOutText`."""
    from wsae_lens.estimators import latent_semantic_consistency

    x = held_out.activations
    codes = sae.encode(x)
    x_hat = sae.decode(codes)
    sae_loss = _loss(model, held_out.tokens[: held_out.ce_rows],
                     [(held_out.hook_name, _splice(held_out.keep[: held_out.ce_rows], lambda a: sae.decode(sae.encode(a))))],
                     batch_prompts)
    denominator = held_out.zero_loss - held_out.clean_loss
    metrics = {
        "explained_variance": explained_variance(sae, x),
        "mse": float((x - x_hat).pow(2).sum(-1).mean()),
        "l0": float((codes != 0).float().sum(-1).mean()),
        "held_out_dead_fraction": float(((codes != 0).sum(0) == 0).float().mean()),
        "ce_loss_score": (held_out.zero_loss - sae_loss) / denominator if denominator else float("nan"),
        "ce_loss_with_sae": sae_loss,
        "ce_loss_without_sae": held_out.clean_loss,
        "ce_loss_zero_ablation": held_out.zero_loss,
    }
    if consistency:
        score = latent_semantic_consistency(sae, [(x, held_out.token_ids)], num_labels=model.cfg.d_vocab, progress=False)
        metrics["semantic_consistency"] = float(score.mean)
    return metrics

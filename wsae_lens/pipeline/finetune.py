"""Fine-tune a pretrained plain TopK SAE with reweighting (arXiv 2506.15963).

A SAELens ``topk`` SAE (a local ``save_model`` folder, or ``SAE.from_pretrained(release, sae_id)`` on
the hub) is converted to a ``weighted_topk`` *training* SAE with the same weights, so that encode and
decode are identical before training; Γ is then estimated from the training activations (or given),
and training continues with SAELens's runner (:class:`wsae_lens.WeightedSAETrainingRunner`).

Decoder-norm rescaling: SAELens saves TopK SAEs with decoder rows folded to unit norm, so the
training SAE's ``rescale_acts_by_decoder_norm`` is the identity at the start.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE, LanguageModelSAERunnerConfig
from sae_lens.saes.topk_sae import TopKSAE, TopKTrainingSAE

from wsae_lens.activations import DEFAULT_OUTLIER_NORM_RATIO, TokenFilter
from wsae_lens.architectures.weighted_topk import WeightedTopKTrainingSAE, WeightedTopKTrainingSAEConfig

CONVERTIBLE_ARCHITECTURES = ("topk", "weighted_topk")


def load_pretrained_sae(source: str | Path, sae_id: str | None = None, device: str = "cpu") -> SAE:
    """A saved SAE: a local SAELens folder, or ``SAE.from_pretrained(source, sae_id)`` (hub release)."""
    if Path(source).is_dir():
        return SAE.load_from_disk(str(source), device=device)
    if sae_id is None:
        raise ValueError(f"{source} is not a local SAE folder; for a hub release pass sae_id (SAE.from_pretrained(release, sae_id)).")
    try:
        return SAE.from_pretrained(str(source), sae_id, device=device)
    except OSError as err:
        raise ConnectionError(
            f"Could not download SAE release={source!r} sae_id={sae_id!r} from the Hugging Face Hub ({err}); "
            "without hub access, pass a local folder saved by SAELens."
        ) from err


def to_weighted_topk(
    sae: SAE | TopKTrainingSAE,
    weighting: str = "variance",
    alpha: float = 1.0,
    weighting_tokens: int = 0,
    gamma: torch.Tensor | None = None,
) -> WeightedTopKTrainingSAE:
    """Convert a plain TopK SAE into a ``weighted_topk`` training SAE with identical weights.

    ``gamma`` (optional) is set at once (``weighting`` then records where it came from); otherwise an
    estimated weighting is computed by the runner before the first step.
    """
    architecture = sae.cfg.architecture()
    if architecture not in CONVERTIBLE_ARCHITECTURES or not isinstance(sae, (TopKSAE, TopKTrainingSAE)):
        raise ValueError(f"Only TopK SAEs convert to weighted_topk (same encoder/decoder); got architecture={architecture!r}.")
    source = sae.cfg.to_dict()
    known = {f.name for f in fields(WeightedTopKTrainingSAEConfig)}
    cfg_dict = {k: v for k, v in source.items() if k in known and k not in ("weighting", "weighting_alpha", "weighting_tokens", "weighting_path")}
    cfg_dict.update(weighting=weighting, weighting_alpha=alpha, weighting_tokens=weighting_tokens)
    cfg = WeightedTopKTrainingSAEConfig.from_dict(cfg_dict)
    weighted = WeightedTopKTrainingSAE(cfg)
    state = {k: v for k, v in sae.state_dict().items() if k != "gamma"}
    missing, unexpected = weighted.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"gamma"}:
        raise ValueError(f"weights do not match weighted_topk: missing {missing}, unexpected {unexpected}.")
    if gamma is not None:
        weighted.set_gamma(gamma, weighting=weighting, alpha=alpha, tokens=weighting_tokens)
    return weighted.to(sae.device)


def finetune_runner_config(sae: WeightedTopKTrainingSAE, overrides: dict[str, Any]) -> LanguageModelSAERunnerConfig:
    """Runner config: the SAE's own metadata (model, hook, context size, dataset) unless overridden."""
    meta = sae.cfg.metadata
    base: dict[str, Any] = {
        "model_name": meta.model_name,
        "hook_name": meta.hook_name,
        "context_size": meta.context_size,
        "dataset_path": meta.dataset_path or "",
        "prepend_bos": meta.prepend_bos if meta.prepend_bos is not None else True,
        "logger": {"log_to_wandb": False},
    }
    base.update({k: v for k, v in overrides.items() if k != "sae"})
    sae_dict = {**sae.cfg.to_dict(), **overrides.get("sae", {})}
    sae_dict.pop("metadata", None)
    base["sae"] = sae_dict
    missing = [k for k in ("model_name", "hook_name", "context_size") if base.get(k) in (None, "")]
    if missing:
        raise ValueError(f"the SAE's metadata lacks {missing}; set them in the fine-tuning config.")
    return LanguageModelSAERunnerConfig.from_dict(base)


def finetune_sae(
    source: str | Path,
    overrides: dict[str, Any],
    *,
    sae_id: str | None = None,
    weighting: str = "variance",
    alpha: float = 1.0,
    weighting_tokens: int = 0,
    model: Any | None = None,
    dataset: Any | None = None,
    outlier_norm_ratio: float | None = DEFAULT_OUTLIER_NORM_RATIO,
) -> WeightedTopKTrainingSAE:
    """Load a TopK SAE, convert it to ``weighted_topk``, estimate Γ and continue training.

    ``overrides`` are SAELens runner-config fields (``training_tokens``, ``lr``, ``output_path``, ...);
    ``model`` / ``dataset`` are passed to the runner as overrides (e.g. the embedded model). The token
    filter is the one the pretrained SAE records in its ``cfg.json``, else special tokens and tokens
    above ``outlier_norm_ratio`` × the median norm. b_dec keeps its trained value.
    """
    from wsae_lens.training import WeightedSAETrainingRunner

    pretrained = load_pretrained_sae(source, sae_id)
    weighted = to_weighted_topk(pretrained, weighting=weighting, alpha=alpha, weighting_tokens=weighting_tokens)
    runner_cfg = finetune_runner_config(weighted, overrides)
    weighted.cfg.metadata = pretrained.cfg.metadata
    runner = WeightedSAETrainingRunner(runner_cfg, override_dataset=dataset, override_model=model, override_sae=weighted,
                                       token_filter=TokenFilter.recorded_in(pretrained),
                                       outlier_norm_ratio=outlier_norm_ratio, init_b_dec_from_data=False)
    return runner.run()

"""SAE vs WSAE on one real model: cache → estimate Γ → train both → evaluate → save.

The one pipeline behind ``wsae-lens demo`` (:mod:`wsae_lens.pipeline.demo`) and the integration test:

1. activations at ``blocks.{layer}.hook_resid_post`` are cached once with SAELens's
   ``CacheActivationsRunner`` (:mod:`wsae_lens.pipeline.caching`);
2. Γ is estimated from the cache (variance proxy, :func:`wsae_lens.estimators.estimate_gamma`; special
   tokens such as BOS are left out, as SAELens's training store leaves them out);
3. SAELens ``topk`` and wsae_lens ``weighted_topk`` are trained by SAELens's runner from the cache
   (``use_cached_activations``) with the same seed, initial weights, token budget and batch order, so
   they see byte-identical activations;
4. both are evaluated with SAELens's ``run_evals`` on held-out text (explained variance, MSE, L0,
   dead latents, CE-loss score) and with the semantic consistency of their latents against token ids
   (:func:`wsae_lens.estimators.latent_semantic_consistency`).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm.auto import tqdm

from wsae_lens.pipeline.caching import cache_activations, cache_config
from wsae_lens.pipeline.embedded import EMBEDDED_DATASET_NAME, EMBEDDED_MODEL_NAME
from wsae_lens.pipeline.loading import is_embedded, load_language_model, load_text_dataset

ARCHITECTURES_COMPARED = ("topk", "weighted_topk")
CACHE_BATCHES_PER_SHARD = 8
"""Model batches per cache shard; the cached token count is a whole number of shards."""


@dataclass
class ComparisonConfig:
    """What to compare and with what budget (defaults: the demo on the embedded SmolLM2-135M).

    ``layer=None`` takes the middle layer (n_layers // 2). ``training_tokens`` are cached once and
    read by both SAEs (rounded down to whole cache shards); if the corpus is smaller, training
    cycles over the cache.
    """

    model_name: str = EMBEDDED_MODEL_NAME
    dataset_path: str = EMBEDDED_DATASET_NAME
    layer: int | None = None
    context_size: int = 128
    training_tokens: int = 204_800
    expansion_factor: int = 8
    k: int = 32
    weighting: str = "variance"
    alpha: float = 1.0
    lr: float = 5e-4
    train_batch_size_tokens: int = 1024
    model_batch_size: int = 8
    eval_batch_size_prompts: int = 8
    n_eval_batches: int = 4
    consistency_tokens: int = 16_384
    seed: int = 0
    device: str = "cpu"
    output_dir: str = "wsae_report"
    keep_activations: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("context_size", "training_tokens", "expansion_factor", "k", "train_batch_size_tokens",
                     "model_batch_size", "eval_batch_size_prompts", "n_eval_batches", "consistency_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0 (γ_i = s_i^α), got {self.alpha}.")


@dataclass
class ComparisonResult:
    """Per-architecture metrics, Γ statistics and where everything was written."""

    config: dict[str, Any]
    hook_name: str
    d_in: int
    d_sae: int
    cached_tokens: int
    gamma_tokens: int
    gamma_summary: dict[str, float]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    sae_paths: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def special_token_ids(tokenizer: Any) -> torch.Tensor:
    """Token ids SAELens's training store leaves out (``exclude_special_tokens=True``)."""
    from sae_lens.util import get_special_token_ids

    return torch.tensor(sorted(get_special_token_ids(tokenizer)) if tokenizer is not None else [], dtype=torch.long)


def _without_special_tokens(batches: Iterator[Any], special: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for batch in batches:
        keep = ~torch.isin(batch.labels, special)
        yield batch.activations[keep], batch.labels[keep]


def estimate_gamma_from_cache(
    cache_dir: str | Path, tokenizer: Any, weighting: str = "variance", alpha: float = 1.0, progress: bool = True
) -> tuple[torch.Tensor, int]:
    """Γ from a cached-activations directory (special tokens left out); returns (Γ, tokens read)."""
    from wsae_lens.estimators import estimate_gamma, iter_activation_batches

    special = special_token_ids(tokenizer)
    counted = {"tokens": 0}

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for acts, labels in _without_special_tokens(iter_activation_batches(cache_dir), special):
            counted["tokens"] += acts.shape[0]
            yield acts, labels

    gamma = estimate_gamma(batches(), weighting=weighting, alpha=alpha, progress=progress)
    return gamma, counted["tokens"]


def runner_config_dict(cfg: ComparisonConfig, architecture: str, hook_name: str, d_in: int,
                       cache_dir: Path, output_path: Path, training_tokens: int) -> dict[str, Any]:
    """The SAELens runner config (as ``LanguageModelSAERunnerConfig.from_dict`` takes) for one architecture."""
    sae: dict[str, Any] = {"architecture": architecture, "d_in": d_in, "d_sae": d_in * cfg.expansion_factor, "k": cfg.k,
                           "normalize_activations": "expected_average_only_in"}
    if architecture.startswith("weighted"):
        sae.update(weighting=cfg.weighting, weighting_alpha=cfg.alpha)
    return {
        "sae": sae,
        "model_name": cfg.model_name,
        "hook_name": hook_name,
        "dataset_path": cfg.dataset_path,
        "is_dataset_tokenized": True,
        "streaming": False,
        "context_size": cfg.context_size,
        "prepend_bos": False,
        "use_cached_activations": True,
        "cached_activations_path": str(cache_dir),
        "training_tokens": training_tokens,
        "train_batch_size_tokens": cfg.train_batch_size_tokens,
        "store_batch_size_prompts": cfg.model_batch_size,
        # SAELens mixes in a buffer of n_batches_in_buffer × context_size tokens; keep it ≥ 2 training batches
        "n_batches_in_buffer": max(2, 2 * -(-cfg.train_batch_size_tokens // cfg.context_size)),
        "lr": cfg.lr,
        "seed": cfg.seed,
        "device": cfg.device,
        "act_store_device": cfg.device,
        "logger": {"log_to_wandb": False},
        "checkpoint_path": str(output_path.parent / "checkpoints" / architecture),
        "n_checkpoints": 0,
        "output_path": str(output_path),
        "exclude_special_tokens": True,
        "verbose": False,
    }


def train_from_cache(
    cfg_dict: dict[str, Any], model: Any, dataset: Any, seed: int, gamma: torch.Tensor | None = None,
    gamma_tokens: int = 0,
) -> Any:
    """Train one SAE with SAELens's runner from the cache; Γ (if given) is set before the first step."""
    from sae_lens import LanguageModelSAERunnerConfig
    from sae_lens.saes.sae import TrainingSAE, TrainingSAEConfig

    from wsae_lens.training import WeightedSAETrainingRunner

    runner_cfg = LanguageModelSAERunnerConfig.from_dict(cfg_dict)
    torch.manual_seed(seed)  # identical initial weights for every architecture
    sae = TrainingSAE.from_dict(TrainingSAEConfig.from_dict(runner_cfg.get_training_sae_cfg_dict()).to_dict())
    if gamma is not None:
        sae.set_gamma(gamma, weighting=sae.cfg.weighting, alpha=sae.cfg.weighting_alpha, tokens=gamma_tokens)
    torch.manual_seed(seed)
    return WeightedSAETrainingRunner(runner_cfg, override_dataset=dataset, override_model=model, override_sae=sae).run()


@torch.no_grad()
def hook_activation_batches(model: Any, dataset: Any, hook_name: str, layer: int, special: torch.Tensor,
                            batch_prompts: int = 8) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(activations, token ids) at ``hook_name`` for the rows of a pre-tokenised dataset, special tokens removed."""
    rows = dataset[:]["input_ids"]
    for start in range(0, rows.shape[0], batch_prompts):
        tokens = rows[start : start + batch_prompts]
        _, cache = model.run_with_cache(tokens, names_filter=[hook_name], stop_at_layer=layer + 1)
        acts, ids = cache[hook_name].reshape(-1, cache[hook_name].shape[-1]), tokens.reshape(-1)
        keep = ~torch.isin(ids, special)
        yield acts[keep], ids[keep]


def evaluate_sae(sae: Any, model: Any, eval_dataset: Any, consistency_dataset: Any, cfg: ComparisonConfig,
                 layer: int) -> dict[str, float]:
    """SAELens ``run_evals`` metrics and latent semantic consistency (token-id labels) on held-out text."""
    from sae_lens.evals import EvalConfig, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler
    from sae_lens.training.activations_store import ActivationsStore

    from wsae_lens.estimators import latent_semantic_consistency

    store = ActivationsStore.from_sae(model, sae, dataset=eval_dataset, context_size=cfg.context_size, streaming=False,
                                      store_batch_size_prompts=cfg.eval_batch_size_prompts, device=cfg.device)
    eval_cfg = EvalConfig(
        batch_size_prompts=cfg.eval_batch_size_prompts,
        n_eval_reconstruction_batches=cfg.n_eval_batches,
        compute_ce_loss=True,
        n_eval_sparsity_variance_batches=cfg.n_eval_batches,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
        compute_featurewise_density_statistics=True,
    )
    metrics, feature_metrics = run_evals(sae, store, model, ActivationScaler(), eval_cfg, exclude_special_tokens=True)
    density = torch.as_tensor(feature_metrics["feature_density"])
    special = special_token_ids(model.tokenizer)
    consistency = latent_semantic_consistency(
        sae, hook_activation_batches(model, consistency_dataset, sae.cfg.metadata.hook_name, layer, special),
        num_labels=model.cfg.d_vocab, progress=cfg.progress,
    )
    return {
        "explained_variance": float(metrics["reconstruction_quality"]["explained_variance"]),
        "mse": float(metrics["reconstruction_quality"]["mse"]),
        "l0": float(metrics["sparsity"]["l0"]),
        "dead_latents": float((density == 0).float().mean()),
        "ce_loss_score": float(metrics["model_performance_preservation"]["ce_loss_score"]),
        "ce_loss_with_sae": float(metrics["model_performance_preservation"]["ce_loss_with_sae"]),
        "ce_loss_without_sae": float(metrics["model_performance_preservation"]["ce_loss_without_sae"]),
        "semantic_consistency": float(consistency.mean),
    }


def training_rows(cfg: ComparisonConfig, dataset: Any, n_held_out_rows: int) -> tuple[int, Any]:
    """(tokens to cache, the rows that hold them): at most ``cfg.training_tokens`` in whole cache shards,
    taken from the front of ``dataset`` so that its last ``n_held_out_rows`` rows stay out for evaluation."""
    shard_tokens = cfg.model_batch_size * cfg.context_size * CACHE_BATCHES_PER_SHARD
    available = (len(dataset) - n_held_out_rows) * cfg.context_size
    cached_tokens = min(cfg.training_tokens, available) // shard_tokens * shard_tokens
    if cached_tokens <= 0:
        raise ValueError(f"{cfg.dataset_path} has {len(dataset)} rows of {cfg.context_size} tokens: too few for "
                         f"{n_held_out_rows} held-out rows plus one cache shard ({shard_tokens} tokens).")
    return cached_tokens, dataset.select(range(cached_tokens // cfg.context_size))


def cache_training_rows(cfg: ComparisonConfig, model: Any, rows: Any, hook_name: str, d_in: int, tokens: int,
                        cache_dir: Path) -> None:
    """Cache ``hook_name`` activations of ``rows`` (``tokens`` of them) to ``cache_dir`` with SAELens's runner."""
    cache_activations(
        cache_config(model_name=cfg.model_name, dataset_path=cfg.dataset_path, hook_name=hook_name, d_in=d_in,
                     tokens=tokens, context_size=cfg.context_size, output_dir=cache_dir,
                     model_batch_size=cfg.model_batch_size, batches_per_shard=CACHE_BATCHES_PER_SHARD,
                     seed=cfg.seed, device=cfg.device),
        model=model, dataset=rows,
    )


def run_comparison(cfg: ComparisonConfig, model: Any | None = None) -> ComparisonResult:
    """Cache → estimate Γ → train topk and weighted_topk → evaluate → save (see the module docstring)."""
    from sae_lens import SAE

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=5, desc="SAE vs WSAE", disable=not cfg.progress)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 2)
        clock = now
        steps.set_postfix_str(f"{name} done")
        steps.update()

    if model is None:
        model = load_language_model(cfg.model_name, device=cfg.device)
    layer = model.cfg.n_layers // 2 if cfg.layer is None else cfg.layer
    if not 0 <= layer < model.cfg.n_layers:
        raise ValueError(f"layer must be in [0, {model.cfg.n_layers - 1}] for {cfg.model_name}, got {layer}.")
    hook_name, d_in = f"blocks.{layer}.hook_resid_post", model.cfg.d_model

    n_eval_rows = cfg.eval_batch_size_prompts * cfg.n_eval_batches
    n_consistency_rows = -(-cfg.consistency_tokens // cfg.context_size)
    max_rows = None if is_embedded(cfg.dataset_path) else cfg.training_tokens // cfg.context_size + n_eval_rows + n_consistency_rows
    dataset = load_text_dataset(cfg.dataset_path, model.tokenizer, context_size=cfg.context_size, streaming=False,
                                seed=cfg.seed, max_rows=max_rows)
    cached_tokens, train_rows = training_rows(cfg, dataset, n_eval_rows + n_consistency_rows)
    eval_rows = dataset.select(range(len(dataset) - n_eval_rows, len(dataset)))
    consistency_rows = dataset.select(range(len(dataset) - n_eval_rows - n_consistency_rows, len(dataset) - n_eval_rows))
    lap("load")

    cache_dir = out / "activations"
    if cache_dir.exists():
        shutil.rmtree(cache_dir)
    cache_training_rows(cfg, model, train_rows, hook_name, d_in, cached_tokens, cache_dir)
    lap("cache")

    gamma, gamma_tokens = estimate_gamma_from_cache(cache_dir, model.tokenizer, cfg.weighting, cfg.alpha, cfg.progress)
    lap("estimate")

    result = ComparisonResult(
        config=asdict(cfg), hook_name=hook_name, d_in=d_in, d_sae=d_in * cfg.expansion_factor,
        cached_tokens=cached_tokens, gamma_tokens=gamma_tokens,
        gamma_summary={"min": float(gamma.min()), "median": float(gamma.median()), "max": float(gamma.max()),
                       "mean_square": float(gamma.pow(2).mean())},
    )
    for architecture in ARCHITECTURES_COMPARED:
        path = out / "saes" / architecture
        cfg_dict = runner_config_dict(cfg, architecture, hook_name, d_in, cache_dir, path, cfg.training_tokens)
        weighted = architecture.startswith("weighted")
        train_from_cache(cfg_dict, model, train_rows, cfg.seed, gamma if weighted else None, gamma_tokens)
        result.sae_paths[architecture] = str(path)
    lap("train")

    for architecture, path in result.sae_paths.items():
        sae = SAE.load_from_disk(path, device=cfg.device)
        result.metrics[architecture] = evaluate_sae(sae, model, eval_rows, consistency_rows, cfg, layer)
    lap("evaluate")
    steps.close()
    result.seconds = seconds
    if not cfg.keep_activations:
        shutil.rmtree(cache_dir, ignore_errors=True)
    shutil.rmtree(out / "saes" / "checkpoints", ignore_errors=True)
    return result

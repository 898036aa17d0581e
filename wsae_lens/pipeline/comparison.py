"""Several SAEs on one real model, trained and judged the same way: cache → filter → train arms → evaluate.

The pipeline behind ``wsae-lens demo`` (:mod:`wsae_lens.pipeline.demo`), the sweep and the tests:

1. **plan rows**: the corpus is split into training rows (cached) and held-out rows (evaluation);
2. **cache** ``blocks.{layer}.hook_resid_post`` of the training rows once with SAELens's
   ``CacheActivationsRunner`` (:mod:`wsae_lens.pipeline.caching`), then read it back into memory through
   the token filter (special tokens, outliers above ``outlier_norm_ratio`` × the median norm);
3. **train each arm** (:class:`Arm`: a name, an architecture, SAE overrides) for ``epochs`` over the kept
   tokens with SAELens's trainer (:func:`wsae_lens.pipeline.cached_training.train_on_activations`), with
   the same seed, initial weights and batch order; an arm with an estimated weighting gets Γ from the
   same kept tokens (:func:`wsae_lens.estimators.estimate_sae_gamma`);
4. **evaluate each arm** on the held-out rows (:mod:`wsae_lens.pipeline.evaluation`).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from wsae_lens.activations import DEFAULT_OUTLIER_NORM_RATIO, TokenFilter, iter_activation_batches, special_token_ids
from wsae_lens.pipeline.caching import cache_activations, cache_config
from wsae_lens.pipeline.embedded import EMBEDDED_DATASET_NAME, EMBEDDED_MODEL_NAME
from wsae_lens.pipeline.loading import DEAD_AFTER_TOKENS, LR_WARM_UP_FRACTION, is_embedded, load_language_model, load_text_dataset

CACHE_BATCHES_PER_SHARD = 8
"""Model batches per cache shard; the cached token count is a whole number of shards."""


@dataclass
class Arm:
    """One SAE of a comparison: its ``name`` (folder and column), SAELens ``architecture``, SAE config
    overrides (``k``, ``weighting``, ``weighting_alpha``, ...) on top of the comparison's shared fields, and
    a ``seed`` (initial weights and batch order; default: the comparison's)."""

    name: str
    architecture: str
    sae: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | Arm) -> Arm:
        if isinstance(data, Arm):
            return data
        unknown = set(data) - {"name", "architecture", "sae", "seed"}
        if unknown or "name" not in data or "architecture" not in data:
            raise ValueError(f"an arm needs `name` and `architecture` (optionally `sae:` overrides and `seed`); got {data}.")
        seed = data.get("seed")
        return cls(str(data["name"]), str(data["architecture"]), dict(data.get("sae") or {}),
                   None if seed is None else int(seed))


DEFAULT_ARMS: tuple[Arm, ...] = (
    # SAELens's TopK loss exactly (Γ = 1), on wsae_lens's sparse training path: 3.5× SAELens's dense TopK step
    # at 576 × 4,608, k 32 (tests/architectures/test_sparse_topk.py checks the two agree)
    Arm("topk", "weighted_topk", {"weighting": "uniform"}),
    # the setting the real-model sweep supports best: rank(Var)^1, the only Γ whose semantic-consistency gain
    # beats lowering k at the same explained-variance cost (docs/real-models.md#does-weighting-help-on-smollm2)
    Arm("weighted_topk", "weighted_topk", {"weighting": "variance", "weighting_transform": "rank", "weighting_alpha": 1.0}),
)


@dataclass
class ComparisonConfig:
    """What to compare and with what budget (defaults: the demo on the embedded SmolLM2-135M).

    ``layer=None`` takes the middle layer (n_layers // 2). ``training_tokens`` are cached once (rounded
    down to whole cache shards) and read ``epochs`` times by every arm. ``arms`` lists the SAEs
    (:class:`Arm` or dicts); ``k`` and ``expansion_factor`` are shared defaults an arm may override.
    ``activations_dir`` reuses the cache of an earlier run with the same model, corpus, layer, seed and
    ``training_tokens`` (its ``output_dir/activations``, kept with ``keep_activations``) instead of caching again.
    """

    model_name: str = EMBEDDED_MODEL_NAME
    dataset_path: str = EMBEDDED_DATASET_NAME
    layer: int | None = None
    context_size: int = 128
    training_tokens: int = 163_840
    epochs: int = 8
    expansion_factor: int = 8
    k: int = 32
    lr: float = 1e-3
    train_batch_size_tokens: int = 1024
    model_batch_size: int = 32
    outlier_norm_ratio: float | None = DEFAULT_OUTLIER_NORM_RATIO
    arms: list[Any] = field(default_factory=lambda: [asdict(arm) for arm in DEFAULT_ARMS])
    eval_rows: int = 32
    held_out_rows: int = 160
    seed: int = 0
    device: str = "cpu"
    output_dir: str = "wsae_report"
    keep_activations: bool = False
    activations_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("context_size", "training_tokens", "epochs", "expansion_factor", "k", "train_batch_size_tokens",
                     "model_batch_size", "eval_rows", "held_out_rows"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.eval_rows > self.held_out_rows:
            raise ValueError(f"eval_rows ({self.eval_rows}) must be at most held_out_rows ({self.held_out_rows}).")
        arms = [Arm.from_dict(arm) for arm in self.arms]
        if not arms or len({arm.name for arm in arms}) != len(arms):
            raise ValueError(f"arms must be a non-empty list with distinct names, got {[a.name for a in arms]}.")
        self.arms = arms


@dataclass
class ComparisonResult:
    """Per-arm metrics, training curves, Γ summaries and where everything was written.

    After :func:`run_comparison`, the attribute ``held_out`` (not serialised) holds the
    :class:`~wsae_lens.pipeline.evaluation.HeldOutText` every arm was evaluated on.
    """

    config: dict[str, Any]
    hook_name: str
    d_in: int
    cached_tokens: int
    kept_tokens: int
    token_filter: dict[str, Any]
    filtered: dict[str, int]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    gamma_summary: dict[str, dict[str, float]] = field(default_factory=dict)
    sae_paths: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def runner_config_dict(cfg: ComparisonConfig, arm: Arm, hook_name: str, d_in: int, output_path: Path) -> dict[str, Any]:
    """The SAELens runner config of one arm (``LanguageModelSAERunnerConfig.from_dict`` input)."""
    steps = cfg.epochs * cfg.training_tokens // cfg.train_batch_size_tokens
    sae = {"architecture": arm.architecture, "d_in": d_in, "d_sae": d_in * cfg.expansion_factor, "k": cfg.k,
           "normalize_activations": "expected_average_only_in", **arm.sae}
    return {
        "sae": sae, "model_name": cfg.model_name, "hook_name": hook_name, "dataset_path": cfg.dataset_path,
        "is_dataset_tokenized": True, "context_size": cfg.context_size, "prepend_bos": False,
        "training_tokens": cfg.epochs * cfg.training_tokens, "train_batch_size_tokens": cfg.train_batch_size_tokens,
        "lr": cfg.lr, "lr_warm_up_steps": int(LR_WARM_UP_FRACTION * steps),
        "dead_feature_window": max(1, -(-DEAD_AFTER_TOKENS // cfg.train_batch_size_tokens)),
        "seed": cfg.seed if arm.seed is None else arm.seed, "device": cfg.device, "act_store_device": cfg.device, "logger": {"log_to_wandb": False},
        "n_checkpoints": 0, "output_path": str(output_path), "exclude_special_tokens": True, "verbose": False,
    }


def plan_rows(cfg: ComparisonConfig, dataset: Any) -> tuple[int, Any, Any]:
    """(tokens to cache, training rows, held-out rows): at most ``cfg.training_tokens`` in whole cache
    shards from the front of ``dataset``; its last ``held_out_rows`` rows are held out."""
    shard_tokens = cfg.model_batch_size * cfg.context_size * CACHE_BATCHES_PER_SHARD
    available = (len(dataset) - cfg.held_out_rows) * cfg.context_size
    cached_tokens = min(cfg.training_tokens, available) // shard_tokens * shard_tokens
    if cached_tokens <= 0:
        raise ValueError(f"{cfg.dataset_path} has {len(dataset)} rows of {cfg.context_size} tokens: too few for "
                         f"{cfg.held_out_rows} held-out rows plus one cache shard ({shard_tokens} tokens).")
    held_out = dataset.select(range(len(dataset) - cfg.held_out_rows, len(dataset)))
    return cached_tokens, dataset.select(range(cached_tokens // cfg.context_size)), held_out


def cache_rows(cfg: ComparisonConfig, model: Any, rows: Any, hook_name: str, tokens: int, cache_dir: Path) -> None:
    """Cache ``hook_name`` activations of ``rows`` (``tokens`` of them) to ``cache_dir`` with SAELens's runner."""
    if cache_dir.exists():
        shutil.rmtree(cache_dir)
    cache_activations(
        cache_config(model_name=cfg.model_name, dataset_path=cfg.dataset_path, hook_name=hook_name,
                     d_in=model.cfg.d_model, tokens=tokens, context_size=cfg.context_size, output_dir=cache_dir,
                     model_batch_size=cfg.model_batch_size, batches_per_shard=CACHE_BATCHES_PER_SHARD,
                     seed=cfg.seed, device=cfg.device),
        model=model, dataset=rows,
    )


def check_reusable_cache(cache_dir: Path, hook_name: str, rows: int) -> None:
    """Refuse (naming ``activations_dir``) a cache that does not hold ``rows`` rows of ``hook_name``."""
    import datasets

    try:
        cache = datasets.load_from_disk(str(cache_dir))
    except FileNotFoundError as err:
        raise ValueError(f"activations_dir={str(cache_dir)!r} is not a cached-activations directory.") from err
    if hook_name not in cache.column_names or len(cache) != rows:
        raise ValueError(
            f"activations_dir={str(cache_dir)!r} holds {len(cache)} rows of {cache.column_names}, but this comparison "
            f"caches {rows} rows of {hook_name!r}: reuse only the cache of a run with the same model, corpus, layer, "
            "seed and training_tokens."
        )


def load_kept_activations(cache_dir: Path, token_filter: TokenFilter) -> tuple[torch.Tensor, torch.Tensor]:
    """Every kept (activations, token ids) of a cache, in memory, through the one road."""
    batches = list(iter_activation_batches(cache_dir, token_filter=token_filter))
    return torch.cat([b.activations for b in batches]), torch.cat([b.labels for b in batches])


def train_arm(cfg: ComparisonConfig, arm: Arm, hook_name: str, activations: torch.Tensor, token_ids: torch.Tensor,
              held_out: torch.Tensor, token_filter: TokenFilter, out: Path) -> tuple[Path, Any, dict[str, float] | None]:
    """Build the arm's SAE (seeded weights), set Γ if its weighting is estimated, train, save; returns
    (folder, training curve, Γ summary or None)."""
    from sae_lens import LanguageModelSAERunnerConfig
    from sae_lens.saes.sae import TrainingSAE, TrainingSAEConfig

    from wsae_lens.architectures.weighting import ESTIMATED_WEIGHTINGS
    from wsae_lens.estimators import describe_gamma
    from wsae_lens.estimators.entry import estimate_sae_gamma
    from wsae_lens.pipeline.cached_training import train_on_activations

    path = out / "saes" / arm.name
    seed = cfg.seed if arm.seed is None else arm.seed
    runner_cfg = LanguageModelSAERunnerConfig.from_dict(runner_config_dict(cfg, arm, hook_name, activations.shape[1], path))
    torch.manual_seed(seed)  # identical initial weights for every arm of one seed
    sae = TrainingSAE.from_dict(TrainingSAEConfig.from_dict(runner_cfg.get_training_sae_cfg_dict()).to_dict())
    gamma_summary = None
    if getattr(sae.cfg, "weighting", "uniform") in ESTIMATED_WEIGHTINGS:
        estimate = estimate_sae_gamma(sae, [(activations, token_ids)], token_filter=TokenFilter.keep_all(), progress=False)
        summary = describe_gamma(estimate.gamma)
        gamma_summary = {key: float(summary[key]) for key in ("min", "median", "max", "mean_square")}
    sae, curve = train_on_activations(sae, runner_cfg, activations, epochs=cfg.epochs, seed=seed, held_out=held_out)
    for key, value in (("hook_name", hook_name), ("model_name", cfg.model_name), ("dataset_path", cfg.dataset_path),
                       ("context_size", cfg.context_size), ("prepend_bos", False), ("exclude_special_tokens", True)):
        sae.cfg.metadata[key] = value
    token_filter.record_in(sae)
    path.mkdir(parents=True, exist_ok=True)
    sae.save_inference_model(str(path))
    (path / "runner_cfg.json").write_text(json.dumps(runner_cfg.to_dict(), default=str))
    return path, curve, gamma_summary


def run_comparison(cfg: ComparisonConfig, model: Any | None = None) -> ComparisonResult:
    """Plan rows → cache → filter → train every arm → evaluate every arm (see the module docstring)."""
    from sae_lens import SAE

    from wsae_lens.pipeline.evaluation import evaluate_sae, prepare_held_out

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=4 + len(cfg.arms), desc="comparison", disable=not cfg.progress)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 2)
        clock = now
        steps.set_postfix_str(f"{name} done")
        steps.update()

    model = model if model is not None else load_language_model(cfg.model_name, device=cfg.device)
    layer = model.cfg.n_layers // 2 if cfg.layer is None else cfg.layer
    if not 0 <= layer < model.cfg.n_layers:
        raise ValueError(f"layer must be in [0, {model.cfg.n_layers - 1}] for {cfg.model_name}, got {layer}.")
    hook_name = f"blocks.{layer}.hook_resid_post"
    max_rows = None if is_embedded(cfg.dataset_path) else cfg.training_tokens // cfg.context_size + cfg.held_out_rows
    dataset = load_text_dataset(cfg.dataset_path, model.tokenizer, context_size=cfg.context_size, streaming=False,
                                seed=cfg.seed, max_rows=max_rows)
    cached_tokens, train_rows, held_out_rows = plan_rows(cfg, dataset)
    lap("load")

    if cfg.activations_dir is None:
        cache_dir = out / "activations"
        cache_rows(cfg, model, train_rows, hook_name, cached_tokens, cache_dir)
    else:
        cache_dir = Path(cfg.activations_dir)
        check_reusable_cache(cache_dir, hook_name, cached_tokens // cfg.context_size)
    lap("cache")

    token_filter = TokenFilter(special_token_ids=special_token_ids(model.tokenizer), outlier_norm_ratio=cfg.outlier_norm_ratio)
    activations, token_ids = load_kept_activations(cache_dir, token_filter)
    filtered = asdict(token_filter.counts)
    held_out = prepare_held_out(model, held_out_rows[:]["input_ids"], hook_name, token_filter, cfg.eval_rows)
    lap("filter")

    result = ComparisonResult(config=asdict(cfg), hook_name=hook_name, d_in=activations.shape[1],
                              cached_tokens=cached_tokens, kept_tokens=activations.shape[0],
                              token_filter=token_filter.to_metadata(), filtered=filtered)
    for arm in cfg.arms:
        path, curve, gamma_summary = train_arm(cfg, arm, hook_name, activations, token_ids, held_out.activations,
                                               token_filter, out)
        result.sae_paths[arm.name] = str(path)
        result.curves[arm.name] = asdict(curve)
        if gamma_summary is not None:
            result.gamma_summary[arm.name] = gamma_summary
        lap(f"train {arm.name}")

    for arm in cfg.arms:
        sae = SAE.load_from_disk(result.sae_paths[arm.name], device=cfg.device)
        result.metrics[arm.name] = evaluate_sae(sae, model, held_out)
        result.metrics[arm.name]["dead_fraction_last_epoch"] = result.curves[arm.name]["dead_fraction"][-1]
    lap("evaluate")
    steps.close()
    result.seconds = seconds
    result.held_out = held_out
    if not cfg.keep_activations and cfg.activations_dir is None:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return result

"""Training on real-model activations inside SAELens's runner: the token filter, Γ, and a sound start.

:class:`WeightedSAETrainingRunner` is a drop-in :class:`~sae_lens.LanguageModelSAETrainingRunner` that

* reads its training batches through :class:`~wsae_lens.activations.FilteredActivationsStore`, so the
  :class:`~wsae_lens.activations.TokenFilter` (special tokens, massive-activation outliers) applies to
  training exactly as to Γ estimation and evaluation, and records the fitted filter in ``cfg.json``;
* before the first step, :func:`prepare_training` estimates (or restores) Γ for weighted
  architectures and initialises ``b_dec`` at the mean of the first kept batches (:func:`init_b_dec`).

Γ is estimated by :func:`wsae_lens.estimators.estimate_sae_gamma` on a *separate* store built from the
same config (the first ``weighting_tokens`` tokens training will see; the training store is untouched):
it does nothing unless the SAE is weighted with ``weighting`` in {"variance", "semantic_consistency"};
when resuming it reuses the Γ stored in the checkpoint; when Γ is already set (``from_pretrained_path``,
``set_gamma``) it keeps it. SAELens's scalar normalisation does not change Γ (mean(γ²) = 1 is
scale-invariant). Running SAELens's plain runner with an estimated weighting fails at the first
training step with a message pointing here.

Preemption (:meth:`WeightedSAETrainingRunner.run_trainer_with_interruption_handling`, through
:func:`wsae_lens.preemption.fit_with_preemption`, shared with the multi-SAE runner): SIGINT or SIGTERM
during training finishes the current step, writes a complete checkpoint to
``checkpoint_path/<training samples>/`` with SAELens's own ``SAETrainer.save_checkpoint`` (SAE incl. Γ,
optimizer/scheduler/trainer state, activation-store position, runner config: what the periodic
checkpoints hold) and raises :class:`TrainingInterrupted`, whose message says how to resume
(``resume_from_checkpoint``). A second signal while the step is still running aborts without saving.

Data-parallel (``torchrun --nproc-per-node N -m wsae_lens.cli train CONFIG.yaml``; the runner is
data-parallel whenever a process group of more than one rank is initialised): each rank reads every N-th
row of the data (:mod:`wsae_lens.distributed.sharding`) in batches of ``train_batch_size_tokens / N``
tokens, and :class:`~wsae_lens.distributed.DataParallelSAETrainer` keeps the ranks identical. The token
filter's median is fitted by rank 0 on the first batch of the whole data and broadcast; b_dec is the mean
over every rank's first tokens and Γ is estimated from every rank's share of ``weighting_tokens`` (so both
equal a single process's over the same rows). A signal on any rank stops every rank after the same step
(one small all-reduce per step); rank 0 alone logs, checkpoints and saves.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from sae_lens import LanguageModelSAETrainingRunner
from sae_lens.constants import RUNNER_CFG_FILENAME, SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME
from sae_lens.training.activations_store import ActivationsStore

from wsae_lens.activations.filtering import METADATA_KEY as TOKEN_FILTER_KEY
from wsae_lens.activations import (
    DEFAULT_OUTLIER_NORM_RATIO,
    FilteredActivationsStore,
    TokenFilter,
    iter_activation_batches,
)
from wsae_lens.architectures.weighting import ESTIMATED_WEIGHTINGS, GAMMA_KEY, GammaMixin
from wsae_lens.distributed.collectives import DataParallel, iterate_gathered
from wsae_lens.distributed.data_parallel import DataParallelSAETrainer, check_batch_split
from wsae_lens.distributed.sharding import DataShard, shard_cached_activations, shard_dataset
from wsae_lens.estimators.entry import (
    estimate_gamma_from_activations,
    estimate_sae_gamma,
    weighting_options,
    weighting_token_budget,
)
from wsae_lens.preemption import TrainingInterrupted, fit_with_preemption  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

WORLD_SIZE_KEY = "data_parallel_world_size"
"""Key of the world size in the saved SAE's ``cfg.json`` metadata and in ``runner_cfg.json``."""

B_DEC_INIT_TOKENS = 16_384
"""Kept tokens whose mean initialises ``b_dec`` (the first batches of the training data)."""


def filtered_store(runner: LanguageModelSAETrainingRunner, *, sharded: bool = True) -> ActivationsStore:
    """A fresh store over the runner's model, config and dataset, filtered by the runner's token filter; other
    stores of the runner (the training store) are not advanced by reading it. In data-parallel training it
    reads this rank's rows only (unless ``sharded=False``)."""
    dataset = getattr(runner, "dataset", None)
    dataset = runner.activations_store.dataset if dataset is None else dataset
    parallel = runner_parallel(runner)
    shard = DataShard(parallel.rank, parallel.world_size) if sharded and parallel.is_distributed else None
    if shard is not None and dataset is not None:
        dataset = shard_dataset(dataset, shard)
    store = FilteredActivationsStore.from_config(runner.model, runner.cfg, override_dataset=dataset)
    store.token_filter = getattr(runner, "token_filter", None)
    if shard is not None:
        if store.cached_activation_dataset is not None:
            store.cached_activation_dataset = shard_cached_activations(
                store.cached_activation_dataset, shard, store.store_batch_size_prompts, runner.cfg.cached_activations_path
            )
        store.shard = shard
    return store


def runner_parallel(runner: Any) -> DataParallel:
    """The runner's data-parallel group (one rank for runners that are not data-parallel)."""
    return getattr(runner, "parallel", None) or DataParallel()


def checkpoint_gamma(checkpoint: str | Path) -> tuple[torch.Tensor, dict[str, Any]]:
    """Γ and the weighting fields stored in a SAELens training checkpoint directory."""
    checkpoint = Path(checkpoint)
    weights = checkpoint / SAE_WEIGHTS_FILENAME
    with safe_open(str(weights), framework="pt") as f:
        if GAMMA_KEY not in f.keys():
            raise ValueError(f"checkpoint {checkpoint} has no Γ ({GAMMA_KEY!r} in {weights.name}); was it a weighted SAE?")
        gamma = f.get_tensor(GAMMA_KEY)
    cfg_path = checkpoint / SAE_CFG_FILENAME
    saved = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    fields = {k: saved[k] for k in ("weighting", "weighting_alpha", "weighting_tokens") if k in saved}
    return gamma, fields


def prepare_weighting(runner: LanguageModelSAETrainingRunner, *, progress: bool = True) -> torch.Tensor | None:
    """Make the runner's SAE ready to train: estimate (or restore) Γ where its weighting needs it.

    Works on any :class:`~sae_lens.LanguageModelSAETrainingRunner` before ``run()``; returns Γ when it
    was estimated or restored, ``None`` when nothing had to be done. See the module docstring.
    """
    sae = runner.sae
    if not isinstance(sae, GammaMixin) or sae.cfg.weighting not in ESTIMATED_WEIGHTINGS:
        return None
    if runner.cfg.resume_from_checkpoint is not None:
        gamma, fields = checkpoint_gamma(runner.cfg.resume_from_checkpoint)
        sae.set_gamma(
            gamma,
            weighting=fields.get("weighting", sae.cfg.weighting),
            alpha=fields.get("weighting_alpha"),
            tokens=fields.get("weighting_tokens"),
        )
        return sae.gamma
    if sae.gamma_ready:
        return None
    token_filter = getattr(runner, "token_filter", None)
    parallel = runner_parallel(runner)
    if parallel.is_distributed:
        estimate_gamma_data_parallel(sae, filtered_store(runner), parallel, training_tokens=int(runner.cfg.training_tokens),
                                     token_filter=token_filter, progress=progress and parallel.is_main)
    else:
        estimate_sae_gamma(sae, filtered_store(runner), training_tokens=int(runner.cfg.training_tokens),
                           token_filter=token_filter, progress=progress)
    return sae.gamma


def estimate_gamma_data_parallel(sae: Any, store: ActivationsStore, parallel: DataParallel, *, training_tokens: int,
                                 token_filter: TokenFilter | None, progress: bool) -> None:
    """Γ from every rank's share of the ``weighting_tokens`` budget, equal on every rank to the estimate one
    process makes over the same tokens: variance moments are merged over the ranks by the estimator itself;
    semantic consistency counts the batches gathered from every rank."""
    cfg = sae.cfg
    budget = parallel.share(weighting_token_budget(int(cfg.weighting_tokens), training_tokens))
    batches = iter_activation_batches(store, max_tokens=budget, token_filter=token_filter)
    if cfg.weighting == "variance":
        estimate = estimate_gamma_from_activations(batches, cfg.weighting, cfg.weighting_alpha, max_tokens=budget,
                                                   token_filter=TokenFilter.keep_all(), progress=progress,
                                                   **weighting_options(cfg))
        tokens = int(parallel.sum_(torch.tensor([estimate.tokens]))[0])
    else:
        estimate = estimate_gamma_from_activations(iterate_gathered(batches, parallel, cfg.d_in), cfg.weighting,
                                                   cfg.weighting_alpha, token_filter=TokenFilter.keep_all(),
                                                   progress=progress, **weighting_options(cfg))
        tokens = estimate.tokens
    sae.set_gamma(estimate.gamma, weighting=cfg.weighting, alpha=cfg.weighting_alpha, tokens=tokens)


@torch.no_grad()
def init_b_dec(sae: Any, activations: torch.Tensor, scaling_factor: float = 1.0,
               parallel: DataParallel | None = None) -> None:
    """b_dec ← mean_t(x_t) · scaling_factor: the SAE starts at the data's mean instead of 0.

    The residual stream has a large mean; with b_dec = 0 most encoder directions never reach the top k
    (sae-practice.md). ``scaling_factor`` is SAELens's normalisation (√d_in / E‖x‖, or 1). With
    ``parallel`` the mean is over every rank's ``activations``.
    """
    x = activations.double()
    if parallel is not None and parallel.is_distributed:
        totals = parallel.sum_(torch.cat([x.sum(0), x.new_tensor([x.shape[0]])]))
        mean = totals[:-1] / totals[-1]
    else:
        mean = x.mean(0)
    sae.b_dec.copy_((mean * scaling_factor).to(sae.b_dec.dtype))


def norm_scaling_factor(activations: torch.Tensor, parallel: DataParallel | None = None) -> float:
    """SAELens's ``expected_average_only_in`` factor √d_in / mean_t ‖x_t‖ for these activations (over every
    rank's with ``parallel``)."""
    norms = activations.float().norm(dim=-1)
    if parallel is None or not parallel.is_distributed:
        return activations.shape[-1] ** 0.5 / float(norms.mean())
    totals = parallel.sum_(torch.tensor([norms.double().sum().item(), norms.shape[0]], dtype=torch.float64))
    return activations.shape[-1] ** 0.5 / float(totals[0] / totals[1])


class WeightedSAETrainingRunner(LanguageModelSAETrainingRunner):
    """SAELens's ``LanguageModelSAETrainingRunner`` with the token filter, Γ and b_dec set up first.

    Same constructor plus ``token_filter`` (default: the config's special tokens and tokens above
    ``outlier_norm_ratio`` × the median norm, 10 unless given, ``None`` for no outlier rule; pass
    ``TokenFilter.keep_all()`` to keep every token), ``init_b_dec_from_data`` (default True) and
    ``data_parallel`` (default: the initialised process group, if any; see the module docstring).
    """

    def __init__(
        self,
        cfg: Any,
        override_dataset: Any | None = None,
        override_model: Any | None = None,
        override_sae: Any | None = None,
        *,
        token_filter: TokenFilter | None = None,
        outlier_norm_ratio: float | None = DEFAULT_OUTLIER_NORM_RATIO,
        init_b_dec_from_data: bool = True,
        data_parallel: DataParallel | None = None,
    ) -> None:
        self.parallel = data_parallel or DataParallel.current()
        if self.parallel.is_distributed:
            check_batch_split(int(cfg.train_batch_size_tokens), self.parallel.world_size)
            if not self.parallel.is_main:  # rank 0 alone logs
                cfg.logger = dataclasses.replace(cfg.logger, log_to_wandb=False)
        super().__init__(cfg, override_dataset=override_dataset, override_model=override_model, override_sae=override_sae)
        self.token_filter = token_filter or TokenFilter(
            special_token_ids=self.activations_store.exclude_special_tokens, outlier_norm_ratio=outlier_norm_ratio
        )
        self.init_b_dec_from_data = init_b_dec_from_data
        self.dataset = self.activations_store.dataset  # all of it: each rank reads its own rows of it
        self.activations_store = filtered_store(self)
        self.activations_store.train_batch_size_tokens = check_batch_split(
            int(cfg.train_batch_size_tokens), self.parallel.world_size
        )
        self.evaluator.activations_store = self.activations_store

    def run(self) -> Any:
        if self.cfg.resume_from_checkpoint is not None:
            restore_token_filter(self.token_filter, self.cfg.resume_from_checkpoint)
        if self.parallel.is_distributed:
            fit_token_filter_on_first_batch(self)
            if self.parallel.is_main:
                logger.info("Data-parallel training on %d ranks: %d tokens per rank and step (global batch %d).",
                               self.parallel.world_size, self.activations_store.train_batch_size_tokens,
                               self.cfg.train_batch_size_tokens)
        prepare_training(self)
        return super().run()

    def run_trainer_with_interruption_handling(self, trainer: Any) -> Any:
        """``trainer.fit()``; on SIGINT/SIGTERM a complete checkpoint, then :class:`TrainingInterrupted`
        (:func:`wsae_lens.preemption.fit_with_preemption`).

        Replaces SAELens's handling, which saves only the store state and runner config (into a folder it
        does not create).
        """
        if self.parallel.is_distributed:
            store = self.activations_store
            trainer = DataParallelSAETrainer.adopt(
                trainer, self.parallel, before_checkpoint=[lambda: store.gather_shard_positions(self.parallel)]
            )
        return fit_with_preemption(trainer, int(self.cfg.training_tokens), agree=self.parallel.agree_on_signal
                                   if self.parallel.is_distributed else None)

    def save_checkpoint(self, checkpoint_path: Path | None) -> None:
        """SAELens's (activation-store state and runner config), into a folder created if needed."""
        if checkpoint_path is not None:
            Path(checkpoint_path).mkdir(parents=True, exist_ok=True)
        super().save_checkpoint(checkpoint_path)
        if checkpoint_path is not None:
            self._record_world_size(Path(checkpoint_path))

    def save_final_sae(self, sae: Any, output_path: str, log_feature_sparsity: torch.Tensor | None = None) -> None:
        """SAELens's, on rank 0 only (the other ranks wait for it)."""
        if self.parallel.is_main:
            super().save_final_sae(sae, output_path, log_feature_sparsity=log_feature_sparsity)
            self._record_world_size(Path(output_path))
        self.parallel.barrier()

    def _record_world_size(self, folder: Path) -> None:
        path = folder / RUNNER_CFG_FILENAME
        if self.parallel.is_distributed and path.is_file():
            path.write_text(json.dumps({**json.loads(path.read_text()), WORLD_SIZE_KEY: self.parallel.world_size}))

    def _set_sae_metadata(self) -> None:
        super()._set_sae_metadata()
        self.token_filter.record_in(self.sae)
        if self.parallel.is_distributed:
            self.sae.cfg.metadata[WORLD_SIZE_KEY] = self.parallel.world_size


def restore_token_filter(token_filter: TokenFilter, checkpoint: str | Path) -> None:
    """Give an unfitted ``token_filter`` the median norm recorded in ``checkpoint``'s cfg.json, so that a
    resumed run drops the same tokens as the run it continues (instead of refitting on a later batch)."""
    cfg_path = Path(checkpoint) / SAE_CFG_FILENAME
    if token_filter.median_norm is not None or not cfg_path.is_file():
        return
    recorded = TokenFilter.from_metadata((json.loads(cfg_path.read_text()).get("metadata") or {}).get(TOKEN_FILTER_KEY))
    if recorded is not None and recorded.outlier_norm_ratio == token_filter.outlier_norm_ratio:
        token_filter.median_norm = recorded.median_norm


def prepare_training(runner: WeightedSAETrainingRunner, *, progress: bool = True) -> None:
    """Γ (:func:`prepare_weighting`) and, for a fresh SAE, b_dec at the mean of the first kept batches;
    the token filter is fitted on those batches (data-parallel: on the first batch of the whole data)."""
    fresh = runner.cfg.resume_from_checkpoint is None and runner.cfg.from_pretrained_path is None
    parallel = runner_parallel(runner)
    if fresh and runner.init_b_dec_from_data:
        batches = iter_activation_batches(filtered_store(runner), max_tokens=parallel.share(B_DEC_INIT_TOKENS),
                                          token_filter=runner.token_filter)
        first = torch.cat([batch.activations for batch in batches]).to(runner.sae.b_dec.device)
        normalise = runner.sae.cfg.normalize_activations == "expected_average_only_in"
        init_b_dec(runner.sae, first, norm_scaling_factor(first, parallel) if normalise else 1.0, parallel)
    prepare_weighting(runner, progress=progress)


def fit_token_filter_on_first_batch(runner: WeightedSAETrainingRunner) -> None:
    """Fit the token filter's median where one process would (the first batch of the whole data), on rank 0,
    and give it to every rank, so that all ranks drop the same tokens."""
    token_filter, parallel = runner.token_filter, runner.parallel
    if token_filter.outlier_norm_ratio is None:
        return
    median = torch.tensor([float("nan") if token_filter.median_norm is None else token_filter.median_norm],
                          dtype=torch.float64)
    if parallel.is_main and token_filter.median_norm is None:
        activations, token_ids = filtered_store(runner, sharded=False).get_raw_llm_batch()
        token_filter.fit(activations, token_ids)
        median[0] = float("nan") if token_filter.median_norm is None else token_filter.median_norm
    parallel.broadcast_(median)
    token_filter.median_norm = None if torch.isnan(median[0]) else float(median[0])

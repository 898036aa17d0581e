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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from sae_lens import LanguageModelSAETrainingRunner
from sae_lens.constants import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME
from sae_lens.training.activations_store import ActivationsStore

from wsae_lens.activations.filtering import METADATA_KEY as TOKEN_FILTER_KEY
from wsae_lens.activations import (
    DEFAULT_OUTLIER_NORM_RATIO,
    FilteredActivationsStore,
    TokenFilter,
    iter_activation_batches,
)
from wsae_lens.architectures.weighting import ESTIMATED_WEIGHTINGS, GAMMA_KEY, GammaMixin
from wsae_lens.estimators.entry import estimate_sae_gamma
from wsae_lens.preemption import TrainingInterrupted, fit_with_preemption  # noqa: F401  (re-exported)

B_DEC_INIT_TOKENS = 16_384
"""Kept tokens whose mean initialises ``b_dec`` (the first batches of the training data)."""


def filtered_store(runner: LanguageModelSAETrainingRunner) -> ActivationsStore:
    """A fresh store over the runner's model, config and dataset, filtered by the runner's token filter; other
    stores of the runner (the training store) are not advanced by reading it."""
    store = FilteredActivationsStore.from_config(runner.model, runner.cfg, override_dataset=runner.activations_store.dataset)
    store.token_filter = getattr(runner, "token_filter", None)
    return store


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
    estimate_sae_gamma(sae, filtered_store(runner), training_tokens=int(runner.cfg.training_tokens),
                       token_filter=getattr(runner, "token_filter", None), progress=progress)
    return sae.gamma


@torch.no_grad()
def init_b_dec(sae: Any, activations: torch.Tensor, scaling_factor: float = 1.0) -> None:
    """b_dec ← mean_t(x_t) · scaling_factor: the SAE starts at the data's mean instead of 0.

    The residual stream has a large mean; with b_dec = 0 most encoder directions never reach the top k
    (sae-practice.md). ``scaling_factor`` is SAELens's normalisation (√d_in / E‖x‖, or 1).
    """
    sae.b_dec.copy_((activations.double().mean(0) * scaling_factor).to(sae.b_dec.dtype))


def norm_scaling_factor(activations: torch.Tensor) -> float:
    """SAELens's ``expected_average_only_in`` factor √d_in / mean_t ‖x_t‖ for these activations."""
    return activations.shape[-1] ** 0.5 / float(activations.float().norm(dim=-1).mean())


class WeightedSAETrainingRunner(LanguageModelSAETrainingRunner):
    """SAELens's ``LanguageModelSAETrainingRunner`` with the token filter, Γ and b_dec set up first.

    Same constructor plus ``token_filter`` (default: the config's special tokens and tokens above
    ``outlier_norm_ratio`` × the median norm, 10 unless given, ``None`` for no outlier rule; pass
    ``TokenFilter.keep_all()`` to keep every token) and ``init_b_dec_from_data`` (default True).
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
    ) -> None:
        super().__init__(cfg, override_dataset=override_dataset, override_model=override_model, override_sae=override_sae)
        self.token_filter = token_filter or TokenFilter(
            special_token_ids=self.activations_store.exclude_special_tokens, outlier_norm_ratio=outlier_norm_ratio
        )
        self.init_b_dec_from_data = init_b_dec_from_data
        self.activations_store = filtered_store(self)
        self.evaluator.activations_store = self.activations_store

    def run(self) -> Any:
        if self.cfg.resume_from_checkpoint is not None:
            restore_token_filter(self.token_filter, self.cfg.resume_from_checkpoint)
        prepare_training(self)
        return super().run()

    def run_trainer_with_interruption_handling(self, trainer: Any) -> Any:
        """``trainer.fit()``; on SIGINT/SIGTERM a complete checkpoint, then :class:`TrainingInterrupted`
        (:func:`wsae_lens.preemption.fit_with_preemption`).

        Replaces SAELens's handling, which saves only the store state and runner config (into a folder it
        does not create).
        """
        return fit_with_preemption(trainer, int(self.cfg.training_tokens))

    def save_checkpoint(self, checkpoint_path: Path | None) -> None:
        """SAELens's (activation-store state and runner config), into a folder created if needed."""
        if checkpoint_path is not None:
            Path(checkpoint_path).mkdir(parents=True, exist_ok=True)
        super().save_checkpoint(checkpoint_path)

    def _set_sae_metadata(self) -> None:
        super()._set_sae_metadata()
        self.token_filter.record_in(self.sae)


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
    the token filter is fitted on those batches."""
    fresh = runner.cfg.resume_from_checkpoint is None and runner.cfg.from_pretrained_path is None
    if fresh and runner.init_b_dec_from_data:
        batches = iter_activation_batches(filtered_store(runner), max_tokens=B_DEC_INIT_TOKENS,
                                          token_filter=runner.token_filter)
        first = torch.cat([batch.activations for batch in batches]).to(runner.sae.b_dec.device)
        normalise = runner.sae.cfg.normalize_activations == "expected_average_only_in"
        init_b_dec(runner.sae, first, norm_scaling_factor(first) if normalise else 1.0)
    prepare_weighting(runner, progress=progress)

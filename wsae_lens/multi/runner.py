"""Many SAEs from one forward pass: SAELens's ``MultiSAETrainingRunner`` with wsae_lens's set-up.

:class:`WeightedMultiSAETrainingRunner` trains every SAE of the config (any registered architecture:
weighted_topk, weighted_batchtopk, weighted_standard, gba, topafa, SAELens's own) from one language-model
forward per batch, each with its own SAELens ``SAETrainer`` (optimizer, schedule, scaler), as SAELens's
runner does, and adds what :class:`~wsae_lens.WeightedSAETrainingRunner` adds to one SAE:

* one :class:`~wsae_lens.activations.TokenFilter` per hook (special tokens + outliers), applied in the
  store (:mod:`wsae_lens.multi.store`) and recorded in each SAE's ``cfg.json``;
* before the first step, in one pass: Γ for every weighted SAE and b_dec at the data mean
  (:mod:`wsae_lens.multi.prepare`);
* SIGINT/SIGTERM → a complete multi-SAE checkpoint and :class:`~wsae_lens.TrainingInterrupted`
  (:func:`wsae_lens.preemption.fit_with_preemption`);
* ``distribute_saes`` under torchrun: each rank trains its share of the SAEs on the global batch
  (:mod:`wsae_lens.multi.placement`).

SAE ``i`` (config order) is initialised after ``torch.manual_seed(seed + i)``, so its start does not
depend on the other SAEs or on how they are spread over ranks. Outputs: ``output_path/<name>/`` per SAE
(``SAE.load_from_disk``), as SAELens saves them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from sae_lens.constants import ACTIVATIONS_STORE_STATE_FILENAME, RUNNER_CFG_FILENAME
from sae_lens.multi_sae_training_runner import MultiSAETrainingRunner
from sae_lens.registry import get_sae_training_class

from wsae_lens.activations import DEFAULT_OUTLIER_NORM_RATIO, TokenFilter
from wsae_lens.distributed import distributed_context, init_distributed
from wsae_lens.multi.config import WeightedMultiSAETrainingRunnerConfig
from wsae_lens.multi.placement import ExchangingProvider, SAEPlacement
from wsae_lens.multi.prepare import prepare_multi_training
from wsae_lens.multi.store import FilteredMultiHookActivationsStore, build_multi_hook_store
from wsae_lens.preemption import fit_with_preemption
from wsae_lens.training import restore_token_filter


def build_saes(cfg: Any, names: list[str]) -> dict[str, Any]:
    """The training SAEs ``names`` of ``cfg``; SAE i (config order) is drawn after manual_seed(seed + i)."""
    saes = {}
    for index, (name, sae_cfg) in enumerate(cfg.saes.items()):
        if name in names:
            torch.manual_seed(int(cfg.seed) + index)
            saes[name] = get_sae_training_class(sae_cfg.architecture())[0](sae_cfg)
    return saes


class WeightedMultiSAETrainingRunner(MultiSAETrainingRunner):
    """SAELens's ``MultiSAETrainingRunner`` with token filters, Γ, b_dec, preemption and ``distribute_saes``.

    Same constructor as SAELens's plus ``token_filters`` (hook → filter; default: the store's special
    tokens and ``cfg.outlier_norm_ratio``). ``cfg`` is a :class:`WeightedMultiSAETrainingRunnerConfig` (or
    SAELens's config, with the wsae_lens options at their defaults). With ``distribute_saes`` the process
    group is joined here (:func:`wsae_lens.distributed.init_distributed`), ``self.saes`` holds this rank's
    SAEs and ``run()`` returns them.
    """

    def __init__(self, cfg: Any, override_dataset: Any | None = None, override_model: Any | None = None,
                 override_saes: dict[str, Any] | None = None, *, token_filters: dict[str, TokenFilter] | None = None) -> None:
        distribute = bool(getattr(cfg, "distribute_saes", False))
        context = init_distributed() if distribute else distributed_context()
        if context.is_distributed and not distribute:
            raise ValueError(
                f"a `saes:` config under torchrun ({context.world_size} ranks) needs distribute_saes: true (each rank "
                "trains its share of the SAEs); replicated data-parallel multi-SAE training is not supported: set "
                "distribute_saes: true, or run in one process."
            )
        self.placement = SAEPlacement.build(cfg.hook_names_per_sae, context, distribute)
        self.full_cfg = cfg
        self.init_b_dec_from_data = bool(getattr(cfg, "init_b_dec_from_data", True))
        if self.placement.distributed:
            if not isinstance(cfg, WeightedMultiSAETrainingRunnerConfig):
                raise TypeError("distribute_saes needs a WeightedMultiSAETrainingRunnerConfig (wsae_lens.multi).")
            if cfg.train_batch_size_tokens % context.world_size:
                raise ValueError(f"train_batch_size_tokens={cfg.train_batch_size_tokens} must be a multiple of the "
                                 f"{context.world_size} ranks: each rank produces an equal share of every global batch.")
            paths = [cfg.checkpoint_path]  # SAELens adds a random id per process: use rank 0's
            dist.broadcast_object_list(paths, src=0)
            cfg.checkpoint_path = paths[0]
            cfg = cfg.restricted_to(self.placement.owned)
        owned = self.placement.owned
        if override_saes is not None:
            override_saes = {name: override_saes[name] for name in owned}
        super().__init__(cfg, override_dataset=override_dataset, override_model=override_model,
                         override_saes=override_saes if override_saes is not None else build_saes(self.full_cfg, owned))
        base = self.activations_store
        ratio = getattr(cfg, "outlier_norm_ratio", DEFAULT_OUTLIER_NORM_RATIO)
        self.token_filters = token_filters or {
            hook: TokenFilter(special_token_ids=base.exclude_special_tokens, outlier_norm_ratio=ratio)
            for hook in self.placement.hooks
        }
        self.exclude_special_tokens = base.exclude_special_tokens
        self.dataset = base.dataset
        if self.placement.distributed:  # each rank reads its own disjoint shard
            from datasets.distributed import split_dataset_by_node

            self.dataset = split_dataset_by_node(self.dataset, rank=context.rank, world_size=context.world_size)
        self.activations_store = self.fresh_store()
        self.evaluator.activations_store = self.activations_store

    def fresh_store(self) -> FilteredMultiHookActivationsStore:
        """A new store over this rank's data, every hook any rank needs, and the runner's filters; reading it
        does not advance the training store."""
        cfg, full = self.cfg, self.full_cfg
        hook_d_ins: dict[str, int] = {}
        heads: dict[str, int | None] = {}
        for name, hook in full.hook_names_per_sae.items():
            hook_d_ins.setdefault(hook, full.saes[name].d_in)
            heads.setdefault(hook, full.hook_head_indices_per_sae[name])
        store = build_multi_hook_store(
            cfg, self.model, self.dataset, hook_d_ins, heads, exclude_special_tokens=self.exclude_special_tokens,
            token_filters=self.token_filters,
            train_batch_size_tokens=cfg.train_batch_size_tokens // self.placement.context.world_size
            if self.placement.distributed else cfg.train_batch_size_tokens,
        )
        if self.placement.distributed:
            store.state_filename = ACTIVATIONS_STORE_STATE_FILENAME.replace(".", f"_rank{self.placement.context.rank}.", 1)
        return store

    def run(self) -> dict[str, Any]:
        """Prepare (filters, Γ, b_dec) in one pass, then SAELens's multi-SAE training; this rank's SAEs."""
        resume = self.cfg.resume_from_checkpoint
        if resume is not None:
            for hook, token_filter in self.token_filters.items():
                first = next(n for n, h in self.full_cfg.hook_names_per_sae.items() if h == hook)
                restore_token_filter(token_filter, Path(resume) / first)
        prepare_multi_training(self)
        saes = super().run()
        if self.placement.distributed:
            dist.barrier()  # every rank's SAEs are saved before any rank returns
        return saes

    def _run_with_interruption_handling(self, trainer: Any) -> dict[str, Any]:
        if self.placement.distributed:
            trainer.data_provider = ExchangingProvider(trainer.data_provider, self.placement)
            self._estimate_scaling_in_lockstep(trainer)
        return fit_with_preemption(trainer, int(self.cfg.training_tokens),
                                   agree=self.placement.parallel.agree_on_signal if self.placement.distributed else None)

    def _estimate_scaling_in_lockstep(self, trainer: Any) -> None:
        """SAELens's trainer reads batches for its norm estimate only when one of its SAEs needs it; across
        ranks every rank must read as many batches (each read is a collective), so all read them or none."""
        local = any(sae.cfg.normalize_activations in ("expected_average_only_in", "covariance_whitening")
                    and trainer.trainers[name].activation_scaler.scaling_factor is None
                    and trainer.trainers[name].activation_scaler.whitening is None
                    for name, sae in trainer.saes.items())
        if not self.placement.parallel.any_rank(local):
            return
        if local:
            trainer._estimate_scaling_factors()
        else:
            for _ in range(trainer.cfg.n_batches_for_norm_estimate):
                next(trainer.data_provider)

    def _set_sae_metadata(self) -> None:
        super()._set_sae_metadata()
        for name, sae in self.saes.items():
            self.token_filters[self.cfg.hook_names_per_sae[name]].record_in(sae)

    def _save_final_outputs(self, saes: dict[str, Any], trainer: Any) -> None:
        """SAELens's (this rank's SAEs, then ``runner_cfg.json``); under ``distribute_saes`` rank 0 writes
        last, after every other rank, so the shared ``runner_cfg.json`` is rank 0's whole file."""
        main = self.placement.context.is_main
        if self.placement.distributed and main:
            dist.barrier()
        super()._save_final_outputs(saes, trainer)
        if self.placement.distributed and not main:
            dist.barrier()

    def _save_runner_checkpoint_files(self, checkpoint_path: Path | None) -> None:
        """The store position (one file per rank under ``distribute_saes``) and, from rank 0, the full config."""
        if checkpoint_path is None:
            return
        self.activations_store.save_to_checkpoint(checkpoint_path)
        if self.placement.context.is_main:
            (Path(checkpoint_path) / RUNNER_CFG_FILENAME).write_text(json.dumps(self.cfg.to_dict()))

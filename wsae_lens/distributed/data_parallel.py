"""Data-parallel training of one SAE: every rank trains the same SAE on its share of each global batch.

The global batch of ``train_batch_size_tokens`` tokens is split into equal per-rank batches. What keeps
the ranks identical (and equal, up to float rounding, to one process training on the global batch):

* gradients: averaged over the ranks after backward and before SAELens clips them (one flat all-reduce,
  :class:`GradientAverager`), so every rank clips the same gradient and takes the same optimizer step;
* SAELens's dead-latent counters: ``n_forward_passes_since_fired`` is reset where a latent fired on any
  rank, ``act_freq_scores`` adds the global firing counts, ``n_training_samples`` counts global tokens;
* batch statistics of an SAE that keeps them (GBA's firing counts and peaks): an SAE with a
  ``global_batch`` attribute gets the run's :class:`DataParallel` there and reduces through it;
* SAELens's activation normalisation (scaling factor or whitening): estimated on the gathered global
  batches (:class:`GatheredBatches`), exactly as one process estimates it;
* the initial parameters and buffers: broadcast from rank 0.

Rank 0 alone writes checkpoints (other ranks take part in the collectives that come before). A training
SAE is "data-parallel safe" when its loss is a mean over tokens and its other batch-dependent state is
reduced through ``global_batch``; SAELens's BatchTopK selects within each rank's batch (k × per-rank batch)
and keeps rank 0's inference threshold.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from sae_lens.training.sae_trainer import SAETrainer

from wsae_lens.distributed.collectives import DataParallel, GatheredBatches


class GradientAverager:
    """Average the parameters' gradients over the ranks when backward ends (one flat all-reduce).

    The first parameter whose gradient is accumulated queues the reduction for the end of the backward
    pass (``queue_callback`` of autograd's engine, the PyTorch-internal seam FSDP uses too), so it runs
    before the trainer clips the gradients. A parameter without a gradient on every rank keeps ``None``.
    An optimizer step whose gradients were not averaged raises instead of letting the ranks drift.
    """

    def __init__(self, parameters: Iterable[torch.nn.Parameter], parallel: DataParallel,
                 optimizer: torch.optim.Optimizer) -> None:
        self.parameters = [p for p in parameters if p.requires_grad]
        self.parallel = parallel
        self.queued = False
        self.reduced = False
        self.handles = [p.register_post_accumulate_grad_hook(self._on_gradient) for p in self.parameters]
        self.handles.append(optimizer.register_step_pre_hook(self._check))

    def _on_gradient(self, parameter: torch.Tensor) -> None:  # noqa: ARG002
        if not self.queued:
            self.queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._reduce)

    @torch.no_grad()
    def _reduce(self) -> None:
        self.queued = False
        present = [p.grad is not None for p in self.parameters]
        dtype = torch.promote_types(torch.float32, self.parameters[0].dtype)
        flat = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(dtype) for p in self.parameters]
            + [torch.tensor(present, dtype=dtype, device=self.parameters[0].device)]
        )
        self.parallel.sum_(flat)
        flat.div_(self.parallel.world_size)
        offset = 0
        for index, p in enumerate(self.parameters):
            chunk = flat[offset : offset + p.numel()].view(p.shape)
            offset += p.numel()
            if flat[-len(self.parameters) + index] == 0:
                continue  # no rank has a gradient for it: the optimizer skips it, as in one process
            if p.grad is None:
                p.grad = chunk.to(p.dtype).clone()
            else:
                p.grad.copy_(chunk)
        self.reduced = True

    def _check(self, optimizer: Any, args: Any, kwargs: Any) -> None:  # noqa: ARG002
        if not self.reduced:
            raise RuntimeError(
                f"rank {self.parallel.rank}: the optimizer stepped on gradients that were not averaged over the "
                "ranks (no parameter received a gradient in backward); data-parallel training needs a loss "
                "that depends on the SAE's parameters."
            )
        self.reduced = False

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def broadcast_module_state(module: torch.nn.Module, parallel: DataParallel) -> None:
    """Give every rank rank 0's parameters and buffers."""
    for tensor in [*module.parameters(), *module.buffers()]:
        parallel.broadcast_(tensor.data)


class DataParallelSAETrainer(SAETrainer):
    """SAELens's :class:`~sae_lens.training.sae_trainer.SAETrainer` for one rank of a data-parallel run.

    Made from a built trainer by :meth:`adopt` (SAELens's runner builds the trainer itself). Adds the
    synchronisation listed in the module docstring; rank 0 alone writes checkpoints, into
    ``<name>.partial`` renamed to ``<name>`` when complete (so the newest complete checkpoint survives a
    crash). ``before_checkpoint`` callables (collectives, e.g. gathering the data positions) run on every
    rank before rank 0 writes.
    """

    parallel: DataParallel
    before_checkpoint: list[Callable[[], None]]

    @classmethod
    def adopt(cls, trainer: SAETrainer, parallel: DataParallel,
              before_checkpoint: Iterable[Callable[[], None]] = ()) -> DataParallelSAETrainer:
        """Turn ``trainer`` (a plain ``SAETrainer``, state already loaded) into this class, in place."""
        if type(trainer) is not SAETrainer and not isinstance(trainer, cls):
            raise TypeError(f"can only adopt a plain SAETrainer, got {type(trainer).__name__}.")
        trainer.__class__ = cls
        adopted: DataParallelSAETrainer = trainer  # type: ignore[assignment]
        adopted.parallel = parallel
        adopted.before_checkpoint = list(before_checkpoint)
        return adopted

    def fit(self) -> Any:
        broadcast_module_state(self.sae, self.parallel)
        self._estimate_normalisation()
        averager = GradientAverager(self.sae.parameters(), self.parallel, self.optimizer)
        previous = getattr(self.sae, "global_batch", None)
        if hasattr(self.sae, "global_batch"):
            self.sae.global_batch = self.parallel
        try:
            return super().fit()
        finally:
            averager.remove()
            if hasattr(self.sae, "global_batch"):
                self.sae.global_batch = previous

    def _estimate_normalisation(self) -> None:
        """SAELens's estimate (as its ``fit`` would make it) over the gathered global batches."""
        norm, scaler = self.sae.cfg.normalize_activations, self.activation_scaler
        batches = GatheredBatches(self.data_provider, self.parallel)
        n_batches = self.cfg.n_batches_for_norm_estimate
        if norm == "expected_average_only_in" and scaler.scaling_factor is None:
            scaler.estimate_scaling_factor(self.sae.cfg.d_in, batches, n_batches)
        elif norm == "covariance_whitening" and scaler.whitening is None:
            scaler.estimate_whitening(self.sae.cfg.d_in, batches, n_batches)

    def step(self, batch: torch.Tensor) -> Any:
        output = super().step(batch)
        self.n_training_samples += batch.shape[0] * (self.parallel.world_size - 1)  # global tokens
        return output

    def _train_step(self, sae: Any, sae_in: torch.Tensor) -> Any:
        act_freq_before = self.act_freq_scores.clone()
        output = super()._train_step(sae, sae_in)
        # one all-reduce: this step's firing counts and, per latent, on how many ranks it fired (its
        # since-fired counter was reset to 0 there; everywhere else it is the common previous value + 1)
        increment = self.act_freq_scores - act_freq_before
        fired = (self.n_forward_passes_since_fired == 0).to(increment.dtype)
        packed = self.parallel.sum_(torch.cat([increment, fired]))
        d_sae = increment.shape[0]
        self.act_freq_scores = act_freq_before + packed[:d_sae]
        self.n_forward_passes_since_fired[packed[d_sae:] > 0] = 0
        return output

    def save_checkpoint(self, checkpoint_name: str, base_path: Path | str | None = None,
                        wandb_aliases: list[str] | None = None) -> None:
        for prepare in self.before_checkpoint:
            prepare()
        if self.parallel.is_main:
            base = base_path if base_path is not None else self.cfg.checkpoint_path
            if base is None:
                super().save_checkpoint(checkpoint_name, base_path, wandb_aliases)
            else:
                final = Path(base) / checkpoint_name
                partial = Path(base) / f"{checkpoint_name}.partial"
                shutil.rmtree(partial, ignore_errors=True)
                super().save_checkpoint(partial.name, base_path, wandb_aliases)
                if final.exists():
                    shutil.rmtree(final)
                partial.rename(final)
        self.parallel.barrier()


def check_batch_split(train_batch_size_tokens: int, world_size: int) -> int:
    """The per-rank batch, or ``ValueError`` naming ``train_batch_size_tokens`` when it does not split evenly."""
    if train_batch_size_tokens % world_size:
        lower = train_batch_size_tokens - train_batch_size_tokens % world_size
        raise ValueError(
            f"train_batch_size_tokens={train_batch_size_tokens} is the global batch and must split evenly over "
            f"the {world_size} ranks; use a multiple of {world_size} (e.g. {lower} or {lower + world_size})."
        )
    return train_batch_size_tokens // world_size

"""``wsae-lens train CONFIG.yaml``: run SAELens's training runner (token filter, Γ and b_dec set up first);
a config with ``saes:`` trains all its SAEs from one forward pass (:mod:`wsae_lens.multi`)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from wsae_lens.cli.app import app


@app.command()
def train(config: Path = typer.Argument(..., help="SAELens runner config (YAML) with an `sae:` or a `saes:` section.")) -> None:
    """Train an SAE with SAELens's runner (via wsae_lens.WeightedSAETrainingRunner) from a YAML config.

    Any architecture registered by SAELens or wsae_lens works (e.g. `architecture: weighted_topk`).
    `model_name: "embedded:smollm2-135m"` and `dataset_path: "embedded:english"` select the offline
    embedded model and corpus (no hub access needed). Special tokens and tokens whose norm exceeds
    `outlier_norm_ratio` (default 10) × the median norm are left out of training and of Γ.
    With `weighting: variance` or `semantic_consistency`, Γ is estimated from the training activations
    before training (over `weighting_tokens` tokens) and saved with the SAE.
    `saes:` (name → SAE fields incl. its own `hook_name`) trains several SAEs from one forward pass of the
    model, each saved to `output_path/<name>/`; with `distribute_saes: true` under torchrun the SAEs are
    divided among the ranks.
    SIGINT/SIGTERM (Ctrl-C, cluster preemption) writes a complete checkpoint to
    `checkpoint_path/<tokens>/` and exits with 130/143; set `resume_from_checkpoint` to continue.
    Under `torchrun --nproc-per-node N` (or `srun` with MASTER_ADDR/MASTER_PORT exported) the SAE is trained
    data-parallel: `train_batch_size_tokens` is the global batch, each rank reads every N-th row of the data,
    and rank 0 alone prints, checkpoints and saves.
    """
    from wsae_lens.distributed import init_distributed, shutdown_distributed
    from wsae_lens.pipeline.loading import is_multi_sae_config, read_config_file

    context = init_distributed()
    if not context.is_main:
        os.environ["TQDM_DISABLE"] = "1"  # one progress bar: rank 0's
    echo = typer.echo if context.is_main else (lambda *args, **kwargs: None)
    try:
        if config.is_file() and is_multi_sae_config(read_config_file(config)):
            _train_many(config, echo)
        else:
            _train_one(config, echo)
    finally:
        shutdown_distributed()


def _train_one(config: Path, echo: Callable[..., None]) -> None:
    from sae_lens.registry import SAE_TRAINING_CLASS_REGISTRY

    from wsae_lens.pipeline.loading import load_runner_config

    inputs = load_runner_config(config)
    architecture = inputs.config["sae"]["architecture"]
    if architecture not in SAE_TRAINING_CLASS_REGISTRY:
        raise typer.BadParameter(
            f"sae.architecture={architecture!r} is not registered; known: {sorted(SAE_TRAINING_CLASS_REGISTRY)}.",
            param_hint="CONFIG",
        )
    for key, value in inputs.filled_defaults.items():
        echo(f"{key} not set: using {value} (short-budget default)")
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size > 1:
        batch = int(inputs.config.get("train_batch_size_tokens", 4096))
        echo(f"Data-parallel training on {world_size} ranks: global batch {batch:,} tokens, "
             f"{batch // world_size:,} per rank.")
    runner = _build(inputs.runner, inputs.config, echo)
    sae = _run(runner.run, echo)
    echo(f"Trained {sae.cfg.architecture()} SAE (d_in={sae.cfg.d_in}, d_sae={sae.cfg.d_sae}); "
         f"token filter {runner.token_filter.counts.describe()}.")
    if runner.cfg.output_path is not None:
        echo(f"Saved to {runner.cfg.output_path}")


def _train_many(config: Path, echo: Callable[..., None]) -> None:
    from wsae_lens.pipeline.loading import load_multi_runner_config

    try:
        inputs = load_multi_runner_config(config)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="CONFIG") from err
    for key, value in inputs.filled_defaults.items():
        echo(f"{key} not set: using {value} (short-budget default)")
    runner = _build(inputs.runner, inputs.config, echo)
    saes = _run(runner.run, echo)
    for name, sae in saes.items():  # every rank reports the SAEs it trained
        hook = runner.cfg.hook_names_per_sae[name]
        typer.echo(f"Trained {name}: {sae.cfg.architecture()} SAE on {hook} (d_in={sae.cfg.d_in}, "
                   f"d_sae={sae.cfg.d_sae}); token filter {runner.token_filters[hook].counts.describe()}.")
    if runner.cfg.output_path is not None:
        echo(f"Saved {len(runner.full_cfg.saes)} SAEs to {runner.cfg.output_path}/<name>/")


def _build(make_runner: Callable[[], Any], cfg: dict[str, Any], echo: Callable[..., None]) -> Any:
    from wsae_lens.pipeline.loading import explain_hub_failure

    try:
        return make_runner()
    except Exception as err:
        explained = explain_hub_failure(err, cfg)
        if explained is None:
            raise
        echo(f"Error: {explained}", err=True)
        raise typer.Exit(code=1) from err


def _run(run: Callable[[], Any], echo: Callable[..., None]) -> Any:
    from wsae_lens.preemption import TrainingInterrupted

    try:
        return run()
    except TrainingInterrupted as interrupted:  # SIGINT/SIGTERM: checkpoint written, one line, no traceback
        echo(f"\n{interrupted}", err=True)  # on a line of its own, after the unfinished progress bar
        raise typer.Exit(code=interrupted.exit_code) from None
    except KeyboardInterrupt:  # Ctrl-C before training started, or a second one during a step
        echo("\nInterrupted before a checkpoint could be written; nothing was saved.", err=True)
        raise typer.Exit(code=128 + signal.SIGINT) from None

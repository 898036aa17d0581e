"""``wsae-lens autointerp SAE_DIR [SAE_DIR ...]``: explain → score saved SAEs with an LLM, compare them.

A thin layer over ``wsae_lens.autointerp.compare_saes``: loads the SAEs (SAELens ``SAE.load_from_disk``),
the model and text named by their metadata (or ``--model`` / ``--dataset``; ``embedded:...`` names select
the offline default), builds the client (``--client local`` or ``--client http``) and writes results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from wsae_lens.cli.app import app


def _load_saes(sae_dirs: list[Path]) -> dict[str, Any]:
    import wsae_lens  # noqa: F401  (registers the architectures before loading)
    from sae_lens import SAE

    saes: dict[str, Any] = {}
    for directory in sae_dirs:
        if not (directory / "cfg.json").is_file():
            raise typer.BadParameter(f"{directory} has no cfg.json: pass a folder saved by SAELens.", param_hint="SAE_DIR")
        name = directory.resolve().name
        while name in saes:
            name += "_"
        saes[name] = SAE.load_from_disk(str(directory), device="cpu")
    hooks = {sae.cfg.metadata.hook_name for sae in saes.values()}
    d_ins = {sae.cfg.d_in for sae in saes.values()}
    if len(hooks) > 1 or len(d_ins) > 1:
        raise typer.BadParameter(
            f"the SAEs read different hooks/widths ({sorted(map(str, hooks))}, d_in {sorted(d_ins)}); compare SAEs "
            "trained on the same hook.",
            param_hint="SAE_DIR",
        )
    return saes


def _build_source(sae: Any, model_name: str | None, dataset: str | None, context_size: int | None, n_contexts: int) -> Any:
    """The SAE's model on its corpus (or the given ones), filtered as the SAE was trained."""
    from wsae_lens.activations import TokenFilter
    from wsae_lens.autointerp import ModelActivationSource
    from wsae_lens.pipeline.embedded import EMBEDDED_DATASET_NAME
    from wsae_lens.pipeline.loading import is_embedded, load_language_model, load_text_dataset

    metadata = sae.cfg.metadata
    model_name = model_name or metadata.model_name
    if not model_name or not metadata.hook_name:
        raise typer.BadParameter(
            "the SAE's cfg.json names no model_name/hook_name; pass --model (e.g. embedded:smollm2-135m).",
            param_hint="--model",
        )
    corpus = dataset or metadata.dataset_path or (EMBEDDED_DATASET_NAME if is_embedded(model_name) else None)
    if not corpus:
        raise typer.BadParameter("the SAE's cfg.json names no dataset_path; pass --dataset.", param_hint="--dataset")
    if is_embedded(model_name) and not is_embedded(corpus):
        raise typer.BadParameter("the embedded model reads an embedded corpus (e.g. embedded:english).", param_hint="--dataset")
    context_size = context_size or metadata.context_size or 128
    model = load_language_model(model_name, model_class_name=metadata.model_class_name or "HookedTransformer")
    tokens = load_text_dataset(corpus, model.tokenizer, context_size=context_size, streaming=False, max_rows=n_contexts)
    return ModelActivationSource(model, tokens, metadata.hook_name, token_filter=TokenFilter.recorded_in(sae))


def _build_client(client: str, base_url: str | None, llm_model: str | None, max_concurrency: int, timeout_s: float) -> Any:
    from wsae_lens.autointerp import OpenAICompatibleClient, TransformersChatClient

    if client == "local":
        return TransformersChatClient()
    if client == "http":
        try:
            return OpenAICompatibleClient(
                base_url=base_url, model=llm_model, max_concurrency=max_concurrency, timeout_s=timeout_s
            )
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--base-url/--llm-model") from err
    raise typer.BadParameter(f"--client must be 'local' or 'http', got {client!r}.", param_hint="--client")


@app.command()
def autointerp(
    sae_dirs: list[Path] = typer.Argument(..., help="Saved SAE folders (cfg.json + weights); several are compared."),
    client: str = typer.Option("local", help="'local' (embedded SmolLM2-135M-Instruct) or 'http' (OpenAI-compatible)."),
    base_url: str = typer.Option(None, help="HTTP client: server URL, e.g. http://localhost:8000/v1 [$WSAE_LENS_LLM_BASE_URL]."),
    llm_model: str = typer.Option(None, help="HTTP client: served model name [$WSAE_LENS_LLM_MODEL]. Key: $WSAE_LENS_LLM_API_KEY or $OPENAI_API_KEY."),
    max_concurrency: int = typer.Option(4, help="HTTP client: requests in flight."),
    timeout: float = typer.Option(60.0, help="HTTP client: seconds per request."),
    model: str = typer.Option(None, help="Model to read activations from (default: the SAE's model_name)."),
    dataset: str = typer.Option(None, help="Text to scan (default: the SAE's dataset_path; embedded:english offline)."),
    context_size: int = typer.Option(None, help="Tokens per context (default: the SAE's context_size)."),
    n_latents: int = typer.Option(20, help="Latents per SAE, drawn at random among live latents."),
    n_contexts: int = typer.Option(2048, help="Contexts scanned for top/held-out/negative examples."),
    seed: int = typer.Option(0, help="Seed for latents, samples and shuffling."),
    fuzzing: bool = typer.Option(True, help="Also run the fuzzing scorer."),
    contexts_per_prompt: int = typer.Option(1, help="Contexts judged per scorer prompt (1 for small models)."),
    config: Path = typer.Option(None, help="JSON file of AutoInterpConfig fields (overrides the flags above)."),
    output: Path = typer.Option(None, help="Results folder (default: SAE_DIR/autointerp, comparison beside the first)."),
    resume: bool = typer.Option(True, help="Keep latents already finished in the output folder."),
) -> None:
    """Explain and score random live latents of saved SAEs with an LLM; print a comparison table."""
    from wsae_lens.autointerp import AutoInterpConfig, compare_saes, comparison_table, run_autointerp

    values: dict[str, Any] = dict(
        n_latents=n_latents, n_contexts=n_contexts, seed=seed, fuzzing=fuzzing, contexts_per_prompt=contexts_per_prompt
    )
    if config is not None:
        if not config.is_file():
            raise typer.BadParameter(f"{config} does not exist.", param_hint="--config")
        values.update(json.loads(config.read_text()))
    try:
        cfg = AutoInterpConfig.from_dict(values)
    except (ValueError, TypeError) as err:
        raise typer.BadParameter(str(err), param_hint="--config") from err

    saes = _load_saes(sae_dirs)
    llm = _build_client(client, base_url, llm_model, max_concurrency, timeout)
    source = _build_source(next(iter(saes.values())), model, dataset, context_size, cfg.n_contexts)
    if output is not None:
        results = compare_saes(saes, source, llm, cfg, output, resume=resume)
        typer.echo(f"Results in {output}")
    else:
        results = {
            name: run_autointerp(sae, source, llm, cfg, directory / "autointerp", name=name, resume=resume)
            for (name, sae), directory in zip(saes.items(), sae_dirs)
        }
        typer.echo("Results in " + ", ".join(str(d / "autointerp") for d in sae_dirs))
    typer.echo(comparison_table(results))

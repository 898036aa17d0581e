"""The multi-SAE runner config: SAELens's ``MultiSAETrainingRunnerConfig`` plus wsae_lens's options, and
the ``saes:`` mapping of a YAML config turned into it with errors that name the field.

YAML shape (runner-level fields shared by every SAE; each SAE under its name)::

    hook_name: blocks.6.hook_resid_post     # default for SAEs that set none
    training_tokens: 2_000_000
    saes:
      uniform:  {architecture: weighted_topk, d_in: 768, d_sae: 6144, k: 32, weighting: uniform}
      alpha_1:  {architecture: weighted_topk, d_in: 768, d_sae: 6144, k: 32, weighting: variance, weighting_alpha: 1.0}
      layer_8:  {architecture: gba, hook_name: blocks.8.hook_resid_post, d_in: 768, d_sae: 6144}
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
from dataclasses import dataclass
from typing import Any

from sae_lens.config import LoggingConfig
from sae_lens.multi_sae_training_runner import MultiSAETrainingRunnerConfig
from sae_lens.registry import SAE_TRAINING_CLASS_REGISTRY, get_sae_training_class

from wsae_lens.activations import DEFAULT_OUTLIER_NORM_RATIO

PER_SAE_RUNNER_FIELDS = ("hook_name", "hook_head_index")
"""Fields of an ``saes:`` entry that are not SAE config fields: where its activations come from."""

_DERIVED = {"saes", "hook_names", "hook_head_indices", "evaluator", "_hook_names_per_sae", "_hook_head_indices_per_sae"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")


@dataclass
class WeightedMultiSAETrainingRunnerConfig(MultiSAETrainingRunnerConfig):
    """SAELens's multi-SAE config plus: ``outlier_norm_ratio`` (token filter C, ``None``: no outlier rule),
    ``init_b_dec_from_data`` (b_dec ← mean of the first kept tokens) and ``distribute_saes`` (under
    torchrun: each rank trains its share of the SAEs on the global batch, see :mod:`wsae_lens.multi.placement`)."""

    outlier_norm_ratio: float | None = DEFAULT_OUTLIER_NORM_RATIO
    init_b_dec_from_data: bool = True
    distribute_saes: bool = False

    def restricted_to(self, names: list[str]) -> WeightedMultiSAETrainingRunnerConfig:
        """The same config for a subset of the SAEs (what one rank trains); ``to_dict`` still gives the full
        config, so that every rank's checkpoint and output record the whole run."""
        subset = copy.copy(self)
        subset.saes = {n: self.saes[n] for n in names}
        subset.hook_names = {n: self.hook_names_per_sae[n] for n in names}
        subset.hook_head_indices = {n: self.hook_head_indices_per_sae[n] for n in names}
        subset._hook_names_per_sae = dict(subset.hook_names)
        subset._hook_head_indices_per_sae = dict(subset.hook_head_indices)
        subset._full = self  # type: ignore[attr-defined]
        return subset

    def to_dict(self) -> dict[str, Any]:
        full = getattr(self, "_full", None)
        return full.to_dict() if full is not None else super().to_dict()


def runner_fields() -> list[str]:
    """The runner-level fields a multi-SAE YAML config may set."""
    return [f.name for f in dataclasses.fields(WeightedMultiSAETrainingRunnerConfig) if f.name not in _DERIVED]


def _unknown(where: str, key: str, valid: list[str]) -> ValueError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else f" Valid fields: {', '.join(sorted(valid))}."
    return ValueError(f"{where}: unknown field {key!r}.{hint}")


def sae_config_from_dict(name: str, fields: Any, default_hook: str | None, source: str) -> tuple[Any, str, int | None]:
    """One ``saes:`` entry → (SAE training config, hook name, hook head index)."""
    where = f"{source}: saes.{name}"
    if not _NAME.match(str(name)):
        raise ValueError(f"{where}: the name is also the output folder; use letters, digits and _ . = + - only.")
    if not isinstance(fields, dict):
        raise ValueError(f"{where} must be a mapping of SAE fields (architecture, d_in, d_sae, ...), got {fields!r}.")
    fields = dict(fields)
    hook_name = fields.pop("hook_name", default_hook)
    head_index = fields.pop("hook_head_index", None)
    if not hook_name:
        raise ValueError(f"{where}.hook_name is missing: set hook_name for this SAE, or a top-level hook_name for all.")
    architecture = fields.get("architecture")
    if architecture is None:
        raise ValueError(f"{where}.architecture is missing (e.g. weighted_topk, gba, topafa).")
    if architecture not in SAE_TRAINING_CLASS_REGISTRY:
        raise ValueError(f"{where}.architecture={architecture!r} is not registered; known: {sorted(SAE_TRAINING_CLASS_REGISTRY)}.")
    cfg_class = get_sae_training_class(architecture)[1]
    valid = [f.name for f in dataclasses.fields(cfg_class)] + ["architecture", *PER_SAE_RUNNER_FIELDS]
    for key in fields:
        if key not in valid:
            raise _unknown(f"{where} ({architecture})", key, valid)
    try:
        return cfg_class.from_dict(fields), str(hook_name), head_index
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from err


def multi_config_from_dict(data: dict[str, Any], source: str = "the config") -> WeightedMultiSAETrainingRunnerConfig:
    """A :class:`WeightedMultiSAETrainingRunnerConfig` from a dict with an ``saes:`` mapping (see module doc)."""
    data = dict(data)
    if "sae" in data:
        raise ValueError(f"{source} has both `sae:` and `saes:`; list every SAE under `saes:` (name → fields).")
    saes = data.pop("saes", None)
    if not isinstance(saes, dict) or not saes:
        raise ValueError(f"{source}: `saes:` must be a non-empty mapping of SAE name → SAE fields.")
    default_hook = data.pop("hook_name", None)
    default_head = data.pop("hook_head_index", None)
    valid = runner_fields()
    for key in data:
        if key not in valid:
            raise _unknown(f"{source} (runner-level)", key, valid + ["hook_name", "hook_head_index", "saes"])
    sae_cfgs, hooks, heads = {}, {}, {}
    for name, fields in saes.items():
        sae_cfgs[name], hooks[name], heads[name] = sae_config_from_dict(name, fields, default_hook, source)
        heads[name] = default_head if heads[name] is None else heads[name]
    logger = data.pop("logger", {"log_to_wandb": False})
    try:
        logger = LoggingConfig(**logger) if isinstance(logger, dict) else logger
    except TypeError as err:
        raise ValueError(f"{source}: logger: {err}") from err
    if "seqpos_slice" in data:
        data["seqpos_slice"] = tuple(data["seqpos_slice"])
    cfg = WeightedMultiSAETrainingRunnerConfig(saes=sae_cfgs, hook_names=hooks, hook_head_indices=heads,
                                               logger=logger, **data)
    if "checkpoint_path" in data:  # SAELens appends a random id in __post_init__; keep the given path
        cfg.checkpoint_path = data["checkpoint_path"]
    return cfg

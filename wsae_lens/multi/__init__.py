"""Many SAEs, one forward pass: :class:`WeightedMultiSAETrainingRunner` (on SAELens's ``MultiSAETrainingRunner``).

Configs: :class:`WeightedMultiSAETrainingRunnerConfig`, from a YAML ``saes:`` mapping with
:func:`multi_config_from_dict`; ``wsae-lens train`` takes such a YAML directly.
"""

from wsae_lens.multi.config import WeightedMultiSAETrainingRunnerConfig, multi_config_from_dict
from wsae_lens.multi.placement import SAEPlacement
from wsae_lens.multi.runner import WeightedMultiSAETrainingRunner, build_saes

__all__ = [
    "SAEPlacement",
    "WeightedMultiSAETrainingRunner",
    "WeightedMultiSAETrainingRunnerConfig",
    "build_saes",
    "multi_config_from_dict",
]

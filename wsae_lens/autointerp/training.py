"""Hook auto-interp into SAELens training: evaluate the trained SAE right after ``run()``.

``AutoInterpTrainingRunner`` is :class:`~wsae_lens.WeightedSAETrainingRunner` plus one step: after training
(and SAELens's own saving), it draws contexts from the runner's activation store (text the SAE was not
trained on, since the store has moved past the training tokens), runs ``run_autointerp`` and stores the
results beside the saved SAE in ``{output_path}/autointerp/``. ``autointerp_after_training`` does the same
for a runner that has already run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sae_lens import LanguageModelSAETrainingRunner

from wsae_lens.autointerp.clients import LLMClient
from wsae_lens.autointerp.config import AutoInterpConfig
from wsae_lens.autointerp.records import ActivationsStoreSource
from wsae_lens.autointerp.runner import AutoInterpResult, run_autointerp
from wsae_lens.training import WeightedSAETrainingRunner

AUTOINTERP_DIR = "autointerp"


def autointerp_after_training(
    runner: LanguageModelSAETrainingRunner,
    sae: Any,
    client: LLMClient,
    cfg: AutoInterpConfig | None = None,
    token_strings: Callable[[Sequence[int]], list[str]] | None = None,
) -> AutoInterpResult:
    """Auto-interp a just-trained ``sae`` on fresh contexts of ``runner``'s activation store.

    Results go to ``{runner.cfg.output_path}/autointerp/`` when the runner saves its SAE (else memory only).
    ``token_strings`` is needed only when the model has no tokenizer.
    """
    source = ActivationsStoreSource(runner.activations_store, token_strings=token_strings,
                                    token_filter=getattr(runner, "token_filter", None))
    output_path = runner.cfg.output_path
    output_dir = Path(output_path) / AUTOINTERP_DIR if output_path is not None else None
    name = sae.cfg.architecture()
    return run_autointerp(sae, source, client, cfg, output_dir=output_dir, name=name, resume=False)


class AutoInterpTrainingRunner(WeightedSAETrainingRunner):
    """The training runner (:class:`~wsae_lens.WeightedSAETrainingRunner`) that auto-interprets the SAE it
    trained, on the positions its token filter keeps (see module docstring).

    Args beyond SAELens's: ``client`` (an ``LLMClient``, or a zero-argument factory called only after
    training, so a large local model is not held in memory while training), ``autointerp_cfg`` and
    ``token_strings`` (see ``autointerp_after_training``). After ``run()``, ``self.autointerp_result``
    holds the result.
    """

    def __init__(
        self,
        cfg: Any,
        client: LLMClient | Callable[[], LLMClient],
        autointerp_cfg: AutoInterpConfig | None = None,
        token_strings: Callable[[Sequence[int]], list[str]] | None = None,
        **runner_kwargs: Any,
    ) -> None:
        super().__init__(cfg, **runner_kwargs)
        self.autointerp_client = client
        self.autointerp_cfg = autointerp_cfg or AutoInterpConfig()
        self.autointerp_token_strings = token_strings
        self.autointerp_result: AutoInterpResult | None = None

    def run(self) -> Any:
        sae = super().run()
        client = self.autointerp_client
        if not hasattr(client, "complete_batch") and callable(client):
            client = client()
        self.autointerp_result = autointerp_after_training(
            self, sae, client, self.autointerp_cfg, self.autointerp_token_strings
        )
        return sae

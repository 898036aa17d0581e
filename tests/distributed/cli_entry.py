"""``python -m tests.distributed.cli_entry train CONFIG.yaml``: ``python -m wsae_lens.cli`` with SAELens's model
loader giving the tiny byte model (no hub here) and the step events of ``WSAE_TEST_EVENTS`` (JSON, see
:func:`tests.distributed.worker.step_events`). Each rank writes its exit code to ``$WSAE_TEST_EXIT_DIR/rank<r>``
(torchrun reports no codes when it is itself stopped by a signal)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

if __name__ == "__main__":
    import sae_lens.llm_sae_training_runner
    import sae_lens.load_model

    from tests.conftest import tiny_byte_transformer
    from tests.distributed.worker import step_events
    from wsae_lens.cli import app

    torch.set_num_threads(1)
    model = tiny_byte_transformer()
    torch.manual_seed(0)  # the SAE's initial weights: as in tests.distributed.worker.train
    sae_lens.load_model.load_model = sae_lens.llm_sae_training_runner.load_model = (  # type: ignore[assignment]
        lambda *args, **kwargs: model
    )
    try:
        with step_events(json.loads(os.environ.get("WSAE_TEST_EVENTS", "{}"))):
            app()
    except SystemExit as exit_:
        folder = Path(os.environ["WSAE_TEST_EXIT_DIR"])
        (folder / f"rank{os.environ.get('RANK', 0)}").write_text(str(exit_.code))
        raise

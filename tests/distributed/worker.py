"""One rank of the data-parallel tests, launched by ``torch.distributed.run`` (``-m tests.distributed.worker PLAN``).

PLAN is a JSON file ``{"runs": [run, ...]}``; each run trains the tiny SAE with its ``config`` and writes
this rank's trained state to ``<out>/rank<r>.pt``. Optional ``events`` (:func:`step_events`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from sae_lens import LanguageModelSAERunnerConfig
from sae_lens.training.sae_trainer import SAETrainer


@contextlib.contextmanager
def step_events(events: dict[str, Any] | None) -> Iterator[None]:
    """During training: ``{"kill": [rank, step, marker]}`` (that rank writes the time to ``marker``, then
    SIGKILLs itself, during that step), ``{"pause": [rank, step, marker]}`` (that rank writes ``marker``
    during the step and waits, up to 60 s, until its interruption handler has received a signal)."""
    events = events or {}
    rank = int(os.environ.get("RANK", 0))
    step = SAETrainer.step

    def step_with_events(self: SAETrainer, batch: torch.Tensor) -> Any:
        out = step(self, batch)
        number = self.n_training_steps + 1
        kill = events.get("kill")
        if kill is not None and kill[:2] == [rank, number]:
            Path(kill[2]).write_text(repr(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)
        pause = events.get("pause")
        if pause is not None and pause[:2] == [rank, number]:
            Path(pause[2]).write_text("paused")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not getattr(self.data_provider, "received", True):
                time.sleep(0.05)
        return out

    SAETrainer.step = step_with_events  # type: ignore[method-assign]
    try:
        yield
    finally:
        SAETrainer.step = step  # type: ignore[method-assign]


def train(cfg: dict[str, Any], events: dict[str, Any] | None = None) -> Any:
    """Train the tiny model's SAE with ``cfg`` (data-parallel in this process's process group, if any)."""
    from tests.conftest import byte_tokenised_text, tiny_byte_transformer
    from wsae_lens import WeightedSAETrainingRunner

    model, dataset = tiny_byte_transformer(), byte_tokenised_text()
    torch.manual_seed(0)  # the SAE's initial weights: the same in every run
    runner = WeightedSAETrainingRunner(LanguageModelSAERunnerConfig.from_dict(cfg), override_model=model,
                                       override_dataset=dataset)
    with step_events(events):
        return runner.run()


def main(plan_path: str) -> None:
    from wsae_lens.distributed import init_distributed, shutdown_distributed

    torch.set_num_threads(1)
    context = init_distributed(backend="gloo")
    plan = json.loads(Path(plan_path).read_text())
    try:
        for run in plan["runs"]:
            sae = train(run["config"], run.get("events"))
            out = Path(run["out"])
            out.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.detach().clone() for k, v in sae.state_dict().items()}, out / f"rank{context.rank}.pt")
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    main(sys.argv[1])

"""SIGINT/SIGTERM during training: finish the step, write a complete checkpoint, raise :class:`TrainingInterrupted`.

:func:`fit_with_preemption` drives any SAELens trainer with ``fit()``, ``data_provider``,
``save_checkpoint(checkpoint_name=...)``, ``n_training_samples`` and ``cfg.checkpoint_path``: the
single-SAE ``SAETrainer`` and the multi-SAE ``MultiSAETrainer``. The signal is acted on between steps
(where the trainer asks for its next batch), so the checkpoint is the state after a whole number of
steps; a second signal aborts at once without a checkpoint. Under ``torch.distributed`` with an
``agree`` callable, every rank learns at each step whether any rank was signalled, so all ranks stop
on the same step (none is left waiting in a collective).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sae_lens.training._interruption import InterruptedException


class TrainingInterrupted(InterruptedException):
    """Training stopped by SIGINT/SIGTERM after writing a complete checkpoint (``checkpoint``; ``None``
    when the config has no ``checkpoint_path``). ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signum: int, checkpoint: Path | None, n_training_samples: int, training_tokens: int) -> None:
        self.signum = signum
        self.checkpoint = checkpoint
        self.n_training_samples = n_training_samples
        self.training_tokens = training_tokens
        where = f"Interrupted ({signal.Signals(signum).name}) at {n_training_samples:,} of {training_tokens:,} training tokens"
        if checkpoint is None:
            message = f"{where}; no checkpoint_path is set, so nothing was saved."
        else:
            message = (f"{where}; checkpoint written to {checkpoint}. "
                       f"Resume with resume_from_checkpoint: {checkpoint} in the config.")
        super().__init__(message)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _StopOnSignal:
    """The trainer's data provider, raising ``InterruptedException`` once a signal was received (by this
    rank or, through ``agree``, by any rank): the trainer asks for a batch only between steps."""

    def __init__(self, provider: Any, received: list[int], agree: Callable[[int], int] | None) -> None:
        self.provider = provider
        self.received = received
        self.agree = agree

    def __iter__(self) -> _StopOnSignal:
        return self

    def __next__(self) -> Any:
        if self.agree is not None:
            signum = self.agree(self.received[0] if self.received else 0)
            if signum and not self.received:
                self.received.append(signum)
        if self.received:
            raise InterruptedException()
        return next(self.provider)


def fit_with_preemption(trainer: Any, training_tokens: int, agree: Callable[[int], int] | None = None) -> Any:
    """``trainer.fit()``; on SIGINT/SIGTERM ``trainer.save_checkpoint`` into
    ``checkpoint_path/<training samples>/``, then :class:`TrainingInterrupted`.

    ``agree(signum or 0)`` (optional) is called on every rank before each batch and returns the signal
    any rank received (0 for none), e.g. a max all-reduce. The previous signal handlers are restored.
    """
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:  # noqa: ARG001
        if received:  # the second one: give up on the step, save nothing
            raise KeyboardInterrupt
        received.append(signum)

    provider = trainer.data_provider
    trainer.data_provider = _StopOnSignal(provider, received, agree)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return trainer.fit()
    except InterruptedException:
        # a signal between steps: nothing else is in flight; no further signal may stop the save
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        trainer.save_checkpoint(checkpoint_name=str(trainer.n_training_samples))
        base = trainer.cfg.checkpoint_path
        checkpoint = None if base is None else Path(base) / str(trainer.n_training_samples)
        raise TrainingInterrupted(received[0], checkpoint, trainer.n_training_samples, training_tokens) from None
    finally:
        trainer.data_provider = provider
        for sig, handler in previous.items():
            signal.signal(sig, handler)

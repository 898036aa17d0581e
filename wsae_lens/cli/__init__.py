"""Command-line interface: a thin layer over the Python API (one module per command)."""

from wsae_lens.cli import (  # noqa: F401  (register commands)
    autointerp,
    demo,
    estimate,
    finetune,
    publish,
    sweep,
    toy_benchmark,
    train,
    zf_plot,
)
from wsae_lens.cli.app import app

__all__ = ["app"]

"""Scale-out on ``torch.distributed`` (``torchrun``, ``srun``): who am I, and the process group.

Everything here is a no-op in a single process: :func:`distributed_context` then says rank 0 of 1, so
code written against it runs unchanged without ``torchrun``.
"""

from wsae_lens.distributed.context import (
    DistributedContext,
    distributed_context,
    init_distributed,
    shutdown_distributed,
)

__all__ = ["DistributedContext", "distributed_context", "init_distributed", "shutdown_distributed"]

"""Scale-out on ``torch.distributed`` (``torchrun``, ``srun``): who am I, the process group, data-parallel training.

Everything here is a no-op in a single process: :func:`distributed_context` then says rank 0 of 1, so
code written against it runs unchanged without ``torchrun``. :class:`DataParallelSAETrainer` trains one
SAE over several ranks (``torchrun --nproc-per-node N -m wsae_lens.cli train CONFIG.yaml``).
"""

from wsae_lens.distributed.context import (
    DistributedContext,
    distributed_context,
    init_distributed,
    shutdown_distributed,
)
from wsae_lens.distributed.collectives import DataParallel
from wsae_lens.distributed.data_parallel import DataParallelSAETrainer
from wsae_lens.distributed.sharding import DataShard

__all__ = [
    "DataParallel",
    "DataParallelSAETrainer",
    "DataShard",
    "DistributedContext",
    "distributed_context",
    "init_distributed",
    "shutdown_distributed",
]

"""Sparse training path for TopK-family SAEs: only the encoder's forward matmul is dense.

SAELens trains a TopK SAE densely: after ``torch.topk`` it scatters the k activations into a
[batch, d_sae] tensor and decodes, and back-propagates, with dense matmuls over all d_sae latents.
With N tokens, k active latents and d_sae ≫ k, the step needs only

* the encoder forward  H = (x − b_dec) W_enc + b_enc                      (dense, N·d_in·d_sae),
* the selection        S_n = top-k_j (H_nj · ‖W_dec,j‖)                    (``torch.topk``),
* the decode           x̂_n = Σ_{j∈S_n} a_nj W_dec,j + b_dec                  (``F.embedding_bag``),
* the backward through the selected latents only:
  ∂W_dec,j = Σ_{n: j∈S_n} a_nj ∂x̂_n,    ∂W_enc,:j = Σ_{n: j∈S_n} g_nj (x_n − b_dec),
  ∂b_enc,j = Σ_{n: j∈S_n} g_nj,          ∂b_dec ∋ −W_enc ∂b_enc            (``index_add_``, sparse mm),

so everything but the encoder forward costs O(N·k·d_in) instead of O(N·d_sae·d_in) (the sparse decoder
and encoder backward of EleutherAI sparsify, here in pure PyTorch ops that run on CPU and CUDA).

The dense pre-activations are computed with SAELens's ops in SAELens's order and ``torch.topk`` breaks ties
alike. Two things differ, both at float rounding only (tested: relative error ≤ 1e-5 in float32): sums are
taken over k latents instead of d_sae, and the training SAE stores W_enc latent-major (same [d_in, d_sae]
values, strides (1, d_in)), so the encoder GEMM may round its last bit differently and the sparse backward
hands ∂W_enc to autograd without a transpose.

Modules, in the order a step uses them:

* :mod:`~wsae_lens.architectures.sparse.mixin`: ``sparse_training`` (:class:`SparseTrainingConfig`) and the
  training step (:class:`SparseTopKTrainingMixin`), whose extra losses come from ``calculate_aux_loss``;
* :mod:`~wsae_lens.architectures.sparse.selection`: chunked top-k selection (:func:`sparse_topk_encode`);
* :mod:`~wsae_lens.architectures.sparse.ops`: the autograd functions (:func:`selected_preactivations`,
  :func:`sparse_decode`);
* :mod:`~wsae_lens.architectures.sparse.auxk`: the AuxK dead-latent loss on the sparse selection;
* :mod:`~wsae_lens.architectures.sparse.buffers`: gradient memory reused across steps on CPU.
"""

from wsae_lens.architectures.sparse.mixin import SparseTopKTrainingMixin, SparseTrainingConfig
from wsae_lens.architectures.sparse.ops import selected_preactivations, sparse_decode
from wsae_lens.architectures.sparse.selection import sparse_topk_encode

__all__ = [
    "SparseTopKTrainingMixin",
    "SparseTrainingConfig",
    "selected_preactivations",
    "sparse_decode",
    "sparse_topk_encode",
]

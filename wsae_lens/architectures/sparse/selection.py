"""The sparse TopK encoder: chunked top-k selection and the selected latents' differentiable values.

:func:`chunked_topk_selection` runs the encoder's one dense matmul a chunk of rows at a time and keeps the
top-k latents of each row (and the AuxK candidates among the dead latents); :func:`sparse_topk_encode`
returns their pre-activations, activations and decoder coefficients as [N, k] tensors whose gradients
touch only the selected latents (:func:`~wsae_lens.architectures.sparse.ops.selected_preactivations`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wsae_lens.architectures.sparse.ops import selected_preactivations

CHUNK_ELEMENTS = 1 << 22
"""The dense pre-activations are computed max(``CHUNK_ELEMENTS`` // d_sae, ``MIN_CHUNK_ROWS``) rows at a time."""

MIN_CHUNK_ROWS = 256
"""Fewer rows per matmul cost GEMM efficiency (85 rows: 2× slower on this CPU; 256 rows: as fast as one matmul)."""


@dataclass
class SparseTopKActivations:
    """k values per row of an [N, d_sae] matrix: ``indices`` [N, k] (distinct per row) and ``values`` [N, k]."""

    indices: torch.Tensor
    values: torch.Tensor
    d_sae: int

    def to_sparse_coo(self) -> torch.Tensor:
        """The [N, d_sae] matrix as an uncoalesced COO tensor (what SAELens's trainer accepts), differentiable
        wrt ``values``."""
        n_rows, k = self.indices.shape
        rows = torch.arange(n_rows, device=self.indices.device).repeat_interleave(k)
        return torch.sparse_coo_tensor(
            torch.stack([rows, self.indices.reshape(-1)]), self.values.reshape(-1), (n_rows, self.d_sae),
            check_invariants=False,
        )

    def to_dense(self) -> torch.Tensor:
        """The [N, d_sae] matrix as a dense tensor (zeros off the selected latents)."""
        dense = self.values.new_zeros(self.indices.shape[0], self.d_sae)
        return dense.scatter(-1, self.indices, self.values)


@dataclass
class SparseTopKEncoding:
    """Output of :func:`sparse_topk_encode`; n_j = ‖W_dec,j‖ when rescaling by decoder norms, else 1.

    Attributes:
        hidden_pre: h = ((x − b) W_enc + b_enc) ⊙ n at the top-k latents, differentiable wrt W_enc, b_enc,
            the input offset and (through n) W_dec, as SAELens's dense ``hidden_pre``.
        acts: the top-k activations a = relu(h), differentiable alike.
        decoder_coefficients: [N, k] c = a / n, what multiplies the decoder rows. c = relu(H) for n > 0, so
            ∂c/∂n ≡ 0: it is computed with n as data, which skips the two cancelling gradient terms
            SAELens's autograd computes through n.
        aux_indices, aux_coefficients: [N, k_aux] the top-k_aux dead latents and h / n there (no ReLU; n as
            data), or None when no AuxK selection was asked for.
    """

    hidden_pre: SparseTopKActivations
    acts: SparseTopKActivations
    decoder_coefficients: torch.Tensor
    aux_indices: torch.Tensor | None
    aux_coefficients: torch.Tensor | None


@torch.no_grad()
def chunked_topk_selection(
    centered_input: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    decoder_norm: torch.Tensor | None,
    k: int,
    *,
    dead_neuron_mask: torch.Tensor | None = None,
    k_aux: int = 0,
    chunk_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Top-k of h = ((x − b) W_enc + b_enc) ⊙ n per row, and top-k_aux of h over the dead latents.

    The encoder's one dense matmul, done ``chunk_rows`` rows at a time so that no [N, d_sae] tensor
    exists; each chunk uses SAELens's ops in SAELens's order (matmul, + b_enc, ⊙ n, ``torch.topk``;
    dead: ``where(dead, h, −inf)``, ``topk``). Returns (values, indices, aux_values, aux_indices).
    """
    n_rows, d_sae = centered_input.shape[0], W_enc.shape[1]
    if chunk_rows is None:
        chunk_rows = max(MIN_CHUNK_ROWS, CHUNK_ELEMENTS // d_sae)
    values = centered_input.new_empty(n_rows, k)
    indices = torch.empty(n_rows, k, dtype=torch.long, device=centered_input.device)
    use_aux = dead_neuron_mask is not None and k_aux > 0
    aux_values = centered_input.new_empty(n_rows, k_aux) if use_aux else None
    aux_indices = torch.empty(n_rows, k_aux, dtype=torch.long, device=centered_input.device) if use_aux else None
    for start in range(0, n_rows, chunk_rows):
        rows = slice(start, start + chunk_rows)
        hidden_pre = centered_input[rows] @ W_enc
        hidden_pre += b_enc
        if decoder_norm is not None:
            hidden_pre *= decoder_norm
        torch.topk(hidden_pre, k=k, dim=-1, sorted=False, out=(values[rows], indices[rows]))
        if use_aux:
            hidden_pre.masked_fill_(~dead_neuron_mask[None], -torch.inf)
            aux_out = (aux_values[rows], aux_indices[rows])  # type: ignore[index]
            torch.topk(hidden_pre, k=k_aux, dim=-1, sorted=False, out=aux_out)
    return values, indices, aux_values, aux_indices


def sparse_topk_encode(
    centered_input: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    W_dec: torch.Tensor,
    k: int,
    *,
    input_offset: torch.Tensor | None = None,
    rescale_acts_by_decoder_norm: bool = True,
    dead_neuron_mask: torch.Tensor | None = None,
    k_aux: int = 0,
    chunk_rows: int | None = None,
) -> SparseTopKEncoding:
    """SAELens's TopK encoder, keeping only the selected latents in the autograd graph.

    h = ((x − b) W_enc + b_enc) ⊙ n (n = ‖W_dec,j‖ when rescaling, else 1), S_n = top-k(h_n),
    a = relu(h_S) (:func:`chunked_topk_selection` and :func:`selected_preactivations`). With
    ``dead_neuron_mask`` and ``k_aux`` > 0 it also selects the AuxK latents (top-k_aux of h over the dead).

    Args:
        centered_input: [N, d_in] x − b (SAELens's ``process_sae_in`` output), not requiring grad.
        input_offset: b (``b_dec`` when ``apply_b_dec_to_input``), to route its gradient, or None.
    """
    decoder_norm = W_dec.norm(dim=-1) if rescale_acts_by_decoder_norm else None
    norm = None if decoder_norm is None else decoder_norm.detach()  # n as data (the selection, the decode)
    top_values, indices, aux_values, aux_indices = chunked_topk_selection(
        centered_input, W_enc, b_enc, norm, k,
        dead_neuron_mask=dead_neuron_mask, k_aux=k_aux, chunk_rows=chunk_rows,
    )  # fmt: skip

    inverse_norm = None if norm is None else 1 / norm

    def selected(values: torch.Tensor, where: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        return selected_preactivations(
            values, centered_input, W_enc, b_enc, where, input_offset=input_offset,
            scale=None if scale is None else scale[where],
        )  # fmt: skip

    def decoder_coefficients(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """h / n at ``where``, with n as data: h / n = H does not depend on n, so the reconstruction's gradient
        skips the two cancelling terms through n."""
        h = selected(values, where, norm)
        return h if inverse_norm is None else h * inverse_norm[where]

    hidden_pre = selected(top_values, indices, decoder_norm)  # carries ∂/∂n for losses on the activations
    acts = hidden_pre.relu()
    coefficients = acts if norm is None else decoder_coefficients(top_values, indices).relu()
    aux_coefficients = None
    if aux_values is not None and aux_indices is not None:
        aux_coefficients = decoder_coefficients(aux_values, aux_indices)
    d_sae = W_enc.shape[1]
    return SparseTopKEncoding(
        hidden_pre=SparseTopKActivations(indices=indices, values=hidden_pre, d_sae=d_sae),
        acts=SparseTopKActivations(indices=indices, values=acts, d_sae=d_sae),
        decoder_coefficients=coefficients,
        aux_indices=aux_indices,
        aux_coefficients=aux_coefficients,
    )

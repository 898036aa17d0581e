"""Autograd functions of the sparse path: gradients that touch only the k selected latents per row.

* :func:`selected_preactivations`: the encoder at the selected latents,
  h_nj = s_nj ((x_n − b) W_enc[:, j] + b_enc[j]);
* :func:`sparse_decode`: the decoder, x̂_n = Σ_i c_ni W_dec[indices[n, i]] (no bias);
* :func:`selected_outer_product`: the gradient of both sparse matrices, as one CSR × dense product.

Also the encoder layout they prefer (:func:`latent_major`).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F

from wsae_lens.architectures.sparse.buffers import gradient_buffer


def is_latent_major(W_enc: torch.Tensor) -> bool:
    """Whether the [d_in, d_sae] encoder is stored latent by latent (strides (1, d_in), as ``W_enc.T``
    would be contiguous): the layout in which the sparse backward writes ∂W_enc without a transpose."""
    return W_enc.stride() == (1, W_enc.shape[0])


def latent_major(W_enc: torch.Tensor) -> torch.Tensor:
    """The same [d_in, d_sae] values stored latent by latent (see :func:`is_latent_major`)."""
    return W_enc.detach().T.contiguous().T


def _csr_matrix(
    row_pointers: torch.Tensor, columns: torch.Tensor, values: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """``torch.sparse_csr_tensor`` without its "Sparse CSR tensor support is in beta state" UserWarning
    (we use only CSR × dense ``addmm``, which is stable)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta state", UserWarning)
        return torch.sparse_csr_tensor(row_pointers, columns, values, size, check_invariants=False)


def selected_outer_product(
    indices: torch.Tensor,
    coefficients: torch.Tensor,
    rows: torch.Tensor,
    d_sae: int,
    *,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """[d_sae, d] matrix M with M_j = Σ_{n, i: indices[n, i] = j} coefficients[n, i] · rows[n].

    The gradient of both sparse matrices of a TopK step (W_dec, and W_enc transposed), as one CSR
    [d_sae, N] × dense [N, d] product: O(N·k·d) work and no [N, d_sae] tensor. Written into ``out``
    ([d_sae, d], contiguous; its old contents are ignored) when given.
    """
    n_rows, k = indices.shape
    flat = indices.reshape(-1)
    order = flat.argsort(stable=True)  # entries grouped by latent, rows ascending within a latent
    row_pointers = torch.zeros(d_sae + 1, dtype=torch.long, device=indices.device)
    torch.cumsum(torch.bincount(flat, minlength=d_sae), 0, out=row_pointers[1:])
    sparse = _csr_matrix(row_pointers, order // k, coefficients.reshape(-1)[order], (d_sae, n_rows))
    if out is None:
        out = rows.new_empty(d_sae, rows.shape[1])
    return torch.addmm(out, sparse, rows, beta=0, out=out)


class _SelectedPreactivations(torch.autograd.Function):
    """h_nj = s_nj · ((x_n − b) · W_enc[:, j] + b_enc[j]) for j = indices[n], with a sparse backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        values: torch.Tensor,
        centered_input: torch.Tensor,
        W_enc: torch.Tensor,
        b_enc: torch.Tensor,
        input_offset: torch.Tensor | None,
        indices: torch.Tensor,
        scale: torch.Tensor | None,
    ) -> torch.Tensor:
        ctx.save_for_backward(centered_input, W_enc, indices, scale, values)
        return values.clone()

    @staticmethod
    def backward(ctx: Any, grad_h: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        centered_input, W_enc, indices, scale, values = ctx.saved_tensors
        needs = ctx.needs_input_grad  # (values, centered_input, W_enc, b_enc, input_offset, indices, scale)
        grad_pre = grad_h if scale is None else grad_h * scale
        grad_W_enc = grad_b_enc = grad_offset = grad_scale = None
        if needs[3] or needs[4]:
            latent_grad_sum = torch.zeros(W_enc.shape[1], dtype=grad_pre.dtype, device=grad_pre.device)
            latent_grad_sum.index_add_(0, indices.reshape(-1), grad_pre.reshape(-1))
            grad_b_enc = latent_grad_sum if needs[3] else None
            if needs[4]:
                grad_offset = -(W_enc @ latent_grad_sum)
        if needs[2]:
            d_in, d_sae = W_enc.shape
            latent_major = is_latent_major(W_enc)
            per_latent = selected_outer_product(
                indices, grad_pre, centered_input, d_sae,
                out=gradient_buffer(W_enc, (d_sae, d_in), "grad" if latent_major else "transposed"),
            )  # fmt: skip
            # ∂W_enc in W_enc's own layout, so that autograd adopts it without a copy
            grad_W_enc = per_latent.T if latent_major else gradient_buffer(W_enc, (d_in, d_sae)).copy_(per_latent.T)
        if needs[6]:
            grad_scale = grad_h * (values / scale)
        return None, None, grad_W_enc, grad_b_enc, grad_offset, None, grad_scale


def selected_preactivations(
    values: torch.Tensor,
    centered_input: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    indices: torch.Tensor,
    *,
    input_offset: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Selected (scaled) pre-activations h_nj = s_nj ((x_n − b) W_enc[:, j] + b_enc[j]), j ∈ indices[n].

    The caller already has their values (``values``, [N, k], e.g. the output of ``torch.topk`` on the
    dense pre-activations); this function returns them with gradients that touch only the selected
    latents: W_enc columns and b_enc entries by ``index_add_`` / sparse mm, and the input offset b
    (SAELens's ``b_dec`` when ``apply_b_dec_to_input``) by −W_enc Σ_n ∂b_enc.

    Args:
        values: [N, k] the forward values (treated as data).
        centered_input: [N, d_in] x − b, already computed (treated as data: it must not require grad).
        W_enc: [d_in, d_sae]; b_enc: [d_sae].
        indices: [N, k] selected latents (long).
        input_offset: b, [d_in], or None when the input is not shifted.
        scale: [N, k] s_nj (decoder norms of the selected latents), or None for s = 1; its gradient
            ∂h/∂s = h/s flows when it requires grad.
    """
    if centered_input.requires_grad:
        raise ValueError(
            "selected_preactivations: centered_input must not require grad; the gradient wrt the input "
            "offset flows through input_offset. Use the dense path to differentiate wrt the input."
        )
    return _SelectedPreactivations.apply(values, centered_input, W_enc, b_enc, input_offset, indices, scale)


class _SparseDecode(torch.autograd.Function):
    """x̂_n = Σ_i c_ni W_dec[indices[n, i]] (``embedding_bag``), backward by sparse mm and gathers."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, indices: torch.Tensor, coefficients: torch.Tensor, W_dec: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(indices, coefficients, W_dec)
        return F.embedding_bag(indices, W_dec, per_sample_weights=coefficients, mode="sum")

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        indices, coefficients, W_dec = ctx.saved_tensors
        grad_coefficients = grad_W_dec = None
        if ctx.needs_input_grad[1]:
            grad_coefficients = _rowwise_dots(indices, W_dec, grad_out)
        if ctx.needs_input_grad[2]:
            grad_W_dec = selected_outer_product(
                indices, coefficients, grad_out, W_dec.shape[0], out=gradient_buffer(W_dec, W_dec.shape)
            )
        return None, grad_coefficients, grad_W_dec


def _rowwise_dots(indices: torch.Tensor, table: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """out[n, i] = table[indices[n, i]] · vectors[n], [N, k], without an [N, k, d] gather: the aten operator
    that ``F.embedding_bag``'s own autograd calls for ∂/∂per_sample_weights."""
    n_rows, k = indices.shape
    flat = indices.reshape(-1)
    offsets = torch.arange(0, n_rows * k, k, device=indices.device)
    bag_of = torch.arange(n_rows, device=indices.device).repeat_interleave(k)
    mode_sum = 0
    dots = torch.ops.aten._embedding_bag_per_sample_weights_backward(vectors, table, flat, offsets, bag_of, mode_sum)
    return dots.view(n_rows, k)


def sparse_decode(indices: torch.Tensor, coefficients: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """Σ_i c_ni W_dec[indices[n, i]] for each row n, [N, d_in] (no bias): the dense c @ W_dec, sparsely.

    Gradients: ∂c_ni = W_dec[indices[n, i]] · ∂x̂_n, ∂W_dec by :func:`selected_outer_product`.
    """
    return _SparseDecode.apply(indices, coefficients, W_dec)

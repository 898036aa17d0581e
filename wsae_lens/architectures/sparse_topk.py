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
hands ∂W_enc to autograd without a transpose. Gradient buffers are reused across steps on CPU
(:func:`gradient_buffer`): PyTorch's CPU allocator gives large blocks back to the OS, and page-faulting a
fresh 75 MB gradient costs as much as computing it.

Decoder-norm rescaling (``rescale_acts_by_decoder_norm``, n_j = ‖W_dec,j‖): SAELens selects on
h = H·n and decodes with the coefficient c = relu(h)/n. For n_j > 0, c = relu(H_nj)·(n_j/n_j), so
∂c/∂n ≡ 0: SAELens's autograd computes two gradient terms through n that cancel exactly (up to rounding).
:func:`selected_preactivations` can carry the gradient through n (pass a ``scale`` that requires grad,
as a loss on the activations themselves needs, e.g. an AFA norm penalty); the TopK losses pass the norms
detached and skip the cancelling pair (the tests compare against SAELens's full autograd).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from sae_lens.saes.sae import TrainStepInput, TrainStepOutput

SparseTrainingChoice = bool | Literal["auto"]

AUTO_MIN_D_SAE = 512
"""``sparse_training="auto"`` uses the dense path below this many latents (per-op overheads dominate)."""

AUTO_MAX_K_FRACTION = 1 / 32
"""``sparse_training="auto"`` uses the dense path when k > d_sae · this (measured: sparse 1.7× faster at
k = d_sae/36, break-even at k = d_sae/16, 0.56× at k = d_sae/8; d_in 576, d_sae 4,608, batch 1,024)."""


def use_sparse_training(choice: SparseTrainingChoice, d_sae: int, k: int) -> bool:
    """Whether ``sparse_training=choice`` takes the sparse path for this d_sae and k.

    ``"auto"``: sparse iff d_sae ≥ :data:`AUTO_MIN_D_SAE` and k ≤ d_sae · :data:`AUTO_MAX_K_FRACTION`
    (the crossover measured with ``benchmarks/bench_sparse_topk.py --sweep``; see the README).
    """
    if choice == "auto":
        return d_sae >= AUTO_MIN_D_SAE and k <= d_sae * AUTO_MAX_K_FRACTION
    return bool(choice)


@dataclass(kw_only=True)
class SparseTrainingConfig:
    """Config field choosing the training path of a TopK-family SAE.

    Args:
        sparse_training: ``True`` (sparse decode and encoder backward, see
            :mod:`wsae_lens.architectures.sparse_topk`), ``False`` (SAELens's dense step) or ``"auto"``
            (sparse where it is faster: :func:`use_sparse_training`). Results are the same either way
            (to float rounding); only speed and memory differ.
    """

    sparse_training: SparseTrainingChoice = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        if self.sparse_training not in (True, False, "auto"):
            raise ValueError(
                f"sparse_training must be True, False or 'auto', got {self.sparse_training!r}."
            )


def is_latent_major(W_enc: torch.Tensor) -> bool:
    """Whether the [d_in, d_sae] encoder is stored latent by latent (strides (1, d_in), as ``W_enc.T``
    would be contiguous): the layout in which the sparse backward writes ∂W_enc without a transpose."""
    return W_enc.stride() == (1, W_enc.shape[0])


def latent_major(W_enc: torch.Tensor) -> torch.Tensor:
    """The same [d_in, d_sae] values stored latent by latent (see :func:`is_latent_major`)."""
    return W_enc.detach().T.contiguous().T


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
        ctx.has_offset = input_offset is not None
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
    sparse = torch.sparse_csr_tensor(
        row_pointers, order // k, coefficients.reshape(-1)[order], (d_sae, n_rows), check_invariants=False
    )
    if out is None:
        out = rows.new_empty(d_sae, rows.shape[1])
    return torch.addmm(out, sparse, rows, beta=0, out=out)


_GRADIENT_BUFFERS: dict[int, tuple[weakref.ref[torch.Tensor], dict[str, torch.Tensor]]] = {}
"""id(parameter) → (weak reference to it, its buffers by slot); an entry goes when its parameter does."""
_STORAGE_USE_COUNT = getattr(torch._C, "_storage_Use_Count", None)


def _storage_users(tensor: torch.Tensor) -> int:
    """References to ``tensor``'s storage (including the one this call makes to read it)."""
    return _STORAGE_USE_COUNT(tensor.untyped_storage()._cdata)  # type: ignore[misc]


_LONE_TENSOR_USERS = _storage_users(torch.empty(1)) if _STORAGE_USE_COUNT is not None else -1


def gradient_buffer(parameter: torch.Tensor, shape: tuple[int, ...], slot: str = "grad") -> torch.Tensor:
    """Memory for a new dense gradient of ``parameter``: its previous one when nothing else holds it.

    A one-slot cache per parameter (on CPU only). PyTorch's CPU allocator returns big blocks to the OS, so
    every fresh [d_sae, d_in] gradient pays its page faults again (≈ 60 ms for 75 MB on this machine, as
    long as the whole sparse product); CUDA's caching allocator needs no help. The buffer is reused only
    when its storage has no user but the cache (the optimiser's ``zero_grad()`` released it), never while
    ``parameter.grad`` or anyone else still refers to it. Returns a fresh view, which autograd's gradient
    accumulation adopts without a copy. ``slot`` names further scratch buffers kept for the same parameter.
    """
    key = id(parameter)
    entry = _GRADIENT_BUFFERS.get(key)
    if entry is None or entry[0]() is not parameter:
        entry = (weakref.ref(parameter, lambda _: _GRADIENT_BUFFERS.pop(key, None)), {})
    cached = entry[1].get(slot)
    reusable = (
        cached is not None
        and cached.shape == shape
        and cached.dtype == parameter.dtype
        and cached.device == parameter.device
        and _storage_users(cached) == _LONE_TENSOR_USERS
    )
    if not reusable:
        cached = parameter.new_empty(shape)
        if parameter.device.type == "cpu" and _STORAGE_USE_COUNT is not None:  # else no safe reuse test
            entry[1][slot] = cached
            _GRADIENT_BUFFERS[key] = entry
    return cached.view(shape)  # type: ignore[union-attr]


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
    """out[n, i] = table[indices[n, i]] · vectors[n], [N, k]: embedding_bag's own per-sample-weight backward."""
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


@dataclass
class SparseTopKActivations:
    """k values per row of an [N, d_sae] matrix: ``indices`` [N, k] (distinct per row) and ``values`` [N, k]."""

    indices: torch.Tensor
    values: torch.Tensor
    d_sae: int

    def to_sparse_coo(self) -> torch.Tensor:
        """The [N, d_sae] matrix as an uncoalesced COO tensor (what SAELens's trainer accepts)."""
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


CHUNK_ELEMENTS = 1 << 22
"""The dense pre-activations are computed max(``CHUNK_ELEMENTS`` // d_sae, ``MIN_CHUNK_ROWS``) rows at a time."""

MIN_CHUNK_ROWS = 256
"""Fewer rows per matmul cost GEMM efficiency (85 rows: 2× slower on this CPU; 256 rows: as fast as one matmul)."""


@dataclass
class SparseTopKEncoding:
    """Output of :func:`sparse_topk_encode`.

    Attributes:
        acts: the top-k activations a = relu(h_S) (differentiable wrt W_enc, b_enc and the input offset).
        decoder_coefficients: [N, k] what multiplies the decoder rows: a/n with rescaling, else a.
        hidden_pre: h at the selected latents (detached), as :class:`SparseTopKActivations`.
        aux_indices, aux_hidden_pre: [N, k_aux] the top-k_aux dead latents and h there (differentiable),
            or None when no AuxK selection was asked for.
        decoder_norm, inverse_decoder_norm: [d_sae] n and 1/n (detached) when rescaling, else None.
    """

    acts: SparseTopKActivations
    decoder_coefficients: torch.Tensor
    hidden_pre: SparseTopKActivations
    aux_indices: torch.Tensor | None
    aux_hidden_pre: torch.Tensor | None
    decoder_norm: torch.Tensor | None
    inverse_decoder_norm: torch.Tensor | None


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
    decoder_norm = inverse_norm = None
    if rescale_acts_by_decoder_norm:
        with torch.no_grad():
            decoder_norm = W_dec.norm(dim=-1)
            inverse_norm = 1 / decoder_norm
    top_values, indices, aux_values, aux_indices = chunked_topk_selection(
        centered_input, W_enc, b_enc, decoder_norm, k,
        dead_neuron_mask=dead_neuron_mask, k_aux=k_aux, chunk_rows=chunk_rows,
    )  # fmt: skip

    def selected(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        scale = None if decoder_norm is None else decoder_norm[where]
        return selected_preactivations(
            values, centered_input, W_enc, b_enc, where, input_offset=input_offset, scale=scale
        )

    acts = selected(top_values, indices).relu()
    coefficients = acts if inverse_norm is None else acts * inverse_norm[indices]
    d_sae = W_enc.shape[1]
    return SparseTopKEncoding(
        acts=SparseTopKActivations(indices=indices, values=acts, d_sae=d_sae),
        decoder_coefficients=coefficients,
        hidden_pre=SparseTopKActivations(indices=indices, values=top_values, d_sae=d_sae),
        aux_indices=aux_indices,
        aux_hidden_pre=None if aux_values is None else selected(aux_values, aux_indices),  # type: ignore[arg-type]
        decoder_norm=decoder_norm,
        inverse_decoder_norm=inverse_norm,
    )


def sparse_topk_aux_reconstruction(encoding: SparseTopKEncoding, W_dec: torch.Tensor) -> torch.Tensor:
    """AuxK reconstruction ê_n = Σ_{j ∈ top-k_aux dead} (h_nj / n_j) W_dec,j (no bias), [N, d_in].

    As SAELens's ``calculate_topk_aux_acts`` + ``act_times_W_dec`` (Gao et al. 2024, App. A.2): the
    top ``k_aux`` dead latents of h (no ReLU), decoded sparsely.
    """
    if encoding.aux_indices is None or encoding.aux_hidden_pre is None:
        raise ValueError(
            "the encoding has no AuxK selection: call sparse_topk_encode with dead_neuron_mask and k_aux > 0."
        )
    coefficients = encoding.aux_hidden_pre
    if encoding.inverse_decoder_norm is not None:
        coefficients = coefficients * encoding.inverse_decoder_norm[encoding.aux_indices]
    return sparse_decode(encoding.aux_indices, coefficients, W_dec)


def _make_contiguous(state_dict: dict[str, Any]) -> None:
    for name, value in state_dict.items():
        if isinstance(value, torch.Tensor) and not value.is_contiguous():
            state_dict[name] = value.contiguous()


class SparseTopKTrainingMixin:
    """Sparse ``training_forward_pass`` for a SAELens TopK-family training SAE.

    Mix in before the SAELens class (``class X(SparseTopKTrainingMixin, TopKTrainingSAE)``); its config
    needs :class:`SparseTrainingConfig`. Falls back to the SAELens (dense) step when
    ``sparse_training`` says so, when hooks are attached to the SAE, under autocast, when the input
    requires grad or is not [N, d_in] after ``process_sae_in``.

    The returned ``TrainStepOutput`` has the same loss, losses and ``sae_out`` as SAELens's;
    ``feature_acts`` is a detached, uncoalesced COO tensor (as with SAELens's ``use_sparse_activations``),
    so the trainer's firing statistics (``.bool().float().sum(-2)``) cost O(N·k) (a loss on the
    activations belongs in :meth:`calculate_sparse_aux_loss`, on ``encoding.acts``); ``hidden_pre`` is a COO
    tensor holding h at the selected latents only (SAELens's trainer does not read it; the dense h is
    never materialised).
    """

    cfg: Any

    def initialize_weights(self) -> None:
        """SAELens's initialisation; then, where the sparse path trains, W_enc is stored latent by latent
        (same values; :func:`is_latent_major`) so the sparse backward hands ∂W_enc over without a transpose."""
        super().initialize_weights()  # type: ignore[misc]
        sae: Any = self
        if use_sparse_training(sae.cfg.sparse_training, sae.cfg.d_sae, sae.cfg.k):
            sae.W_enc = torch.nn.Parameter(latent_major(sae.W_enc))

    def process_state_dict_for_saving(self, state_dict: dict[str, Any]) -> None:
        super().process_state_dict_for_saving(state_dict)  # type: ignore[misc]
        _make_contiguous(state_dict)  # safetensors stores contiguous tensors only

    def process_state_dict_for_saving_inference(self, state_dict: dict[str, Any]) -> None:
        super().process_state_dict_for_saving_inference(state_dict)  # type: ignore[misc]
        _make_contiguous(state_dict)

    def sparse_training_active(self, sae_in: torch.Tensor) -> bool:
        """Whether this step takes the sparse path (see the class docstring for the fall-backs)."""
        if not use_sparse_training(self.cfg.sparse_training, self.cfg.d_sae, self.cfg.k):
            return False
        if sae_in.requires_grad or torch.is_autocast_enabled(sae_in.device.type):
            return False
        hook_points = self.hook_dict.values()  # type: ignore[attr-defined]
        return not any(hp._forward_hooks or hp._backward_hooks for hp in hook_points)

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        if not self.sparse_training_active(step_input.sae_in):
            return super().training_forward_pass(step_input)  # type: ignore[misc]
        sae: Any = self
        with torch.no_grad():
            centered = sae.process_sae_in(step_input.sae_in)
        if centered.ndim != 2:
            return super().training_forward_pass(step_input)  # type: ignore[misc]
        dead_neuron_mask, k_aux, aux_scale = self.aux_selection(step_input)
        encoding = sparse_topk_encode(
            centered,
            sae.W_enc,
            sae.b_enc,
            sae.W_dec,
            sae.cfg.k,
            input_offset=sae.b_dec if sae.cfg.apply_b_dec_to_input else None,
            rescale_acts_by_decoder_norm=sae.cfg.rescale_acts_by_decoder_norm,
            dead_neuron_mask=dead_neuron_mask,
            k_aux=k_aux,
        )
        recons = sparse_decode(encoding.acts.indices, encoding.decoder_coefficients, sae.W_dec) + sae.b_dec
        sae_out = sae.reshape_fn_out(sae.run_time_activation_norm_fn_out(sae.hook_sae_recons(recons)), sae.d_head)

        mse_loss = sae.mse_loss_fn(sae_out, step_input.sae_in).sum(dim=-1).mean()
        losses = {"mse_loss": mse_loss}
        losses.update(self.calculate_sparse_aux_loss(step_input, encoding, sae_out, aux_scale))
        total_loss = mse_loss
        for name, value in losses.items():
            if name != "mse_loss":
                total_loss = total_loss + value
        return TrainStepOutput(
            sae_in=step_input.sae_in,
            sae_out=sae_out,
            feature_acts=replace(encoding.acts, values=encoding.acts.values.detach()).to_sparse_coo(),
            hidden_pre=encoding.hidden_pre.to_sparse_coo(),
            loss=total_loss,
            losses=losses,
        )

    def aux_selection(self, step_input: TrainStepInput) -> tuple[torch.Tensor | None, int, float]:
        """SAELens's AuxK sizing: (dead mask or None, k_aux = min(d_in // 2, n_dead), min(n_dead / (d_in // 2), 1))."""
        sae: Any = self
        dead_neuron_mask = step_input.dead_neuron_mask
        if dead_neuron_mask is None or (num_dead := int(dead_neuron_mask.sum())) == 0:
            return None, 0, 0.0
        if sae.cfg.normalize_activations in ("constant_norm_rescale", "layer_norm"):
            raise ValueError(
                "TopK auxiliary loss does not support activation normalization "
                f"(normalize_activations={sae.cfg.normalize_activations!r}); use 'none' or "
                "'expected_average_only_in'."
            )
        k_aux = step_input.sae_in.shape[-1] // 2
        return dead_neuron_mask, min(k_aux, num_dead), min(num_dead / k_aux, 1.0)

    def calculate_sparse_aux_loss(
        self,
        step_input: TrainStepInput,
        encoding: SparseTopKEncoding,
        sae_out: torch.Tensor,
        aux_scale: float,
    ) -> dict[str, torch.Tensor]:
        """SAELens's TopK AuxK loss (``calculate_topk_aux_loss``), with a sparse decode.

        coef · min(n_dead / k_aux, 1) · mean_n ‖ê_n − (x_n − x̂_n)‖², k_aux = min(d_in // 2, n_dead).
        """
        sae: Any = self
        if encoding.aux_indices is None:
            return {"auxiliary_reconstruction_loss": sae_out.new_tensor(0.0)}
        residual = (step_input.sae_in - sae_out).detach()
        recons = sae.reshape_fn_out(sparse_topk_aux_reconstruction(encoding, sae.W_dec), sae.d_head)
        auxk_loss = (recons - residual).pow(2).sum(dim=-1).mean()
        return {"auxiliary_reconstruction_loss": sae.cfg.aux_loss_coefficient * aux_scale * auxk_loss}

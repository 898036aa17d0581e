"""AuxK, the TopK dead-latent loss (Gao et al. 2024, arXiv 2406.04093, App. A.2 and B.1), on the sparse path.

The dense path uses SAELens's ``TopKTrainingSAE.calculate_topk_aux_loss``. The sparse path cannot call it:
that function selects the top-k_aux dead latents from the dense [N, d_sae] pre-activations
(``calculate_topk_aux_acts``) and decodes the [N, d_sae] result, a tensor the sparse path never forms. The
sparse path selects the AuxK latents in the encoder's chunked pass instead
(:func:`~wsae_lens.architectures.sparse.selection.chunked_topk_selection`) and decodes their [N, k_aux]
coefficients sparsely; these functions hold the rest of the maths, as SAELens computes it.
"""

from __future__ import annotations

import torch


def auxk_size(num_dead: int, width: int) -> int:
    """k_aux = min(⌊d/2⌋, n_dead): the dead latents each row's AuxK reconstruction uses (d = ``width``)."""
    return min(width // 2, num_dead)


def auxk_loss(
    aux_reconstruction: torch.Tensor, residual: torch.Tensor, k_aux: int, coefficient: float
) -> torch.Tensor:
    """L_aux = coefficient · (k_aux / ⌊d/2⌋) · mean_n ‖ê_n − r_n‖², d = ``residual.shape[-1]``.

    ê_n = Σ_{j ∈ top-k_aux dead latents of row n} (h_nj / n_j) W_dec,j is ``aux_reconstruction`` (no decoder
    bias) and r_n = x_n − x̂_n the main reconstruction's detached residual, both [..., d]. With
    k_aux = :func:`auxk_size`, k_aux / ⌊d/2⌋ = min(n_dead / ⌊d/2⌋, 1): the loss shrinks while fewer latents
    are dead than AuxK would use.
    """
    scale = k_aux / (residual.shape[-1] // 2)
    return coefficient * scale * (aux_reconstruction - residual).pow(2).sum(dim=-1).mean()

import pytest
import torch

from wsae_lens.diagnostics.theory import (
    closed_form_code,
    feature_shrinking_example,
    loss_gap_check,
    no_sparse_activation_counterexample,
    theorem1_check,
    tied_sae_loss,
    too_few_latents_bound,
)
from wsae_lens.diagnostics.toy_model import ToyModel, digon_wp, polygon_wp, random_wp

GEOMETRIES = {
    "digon": digon_wp(4, 2),
    "polygons": polygon_wp([1, 2, 3, 4]),
    "random": random_wp(12, 6, seed=0),
}


def written_out_terms(w_p: torch.Tensor, gamma: torch.Tensor, x: torch.Tensor):
    """Per sample at W_m = W_pᵀ (tied, bias-free ReLU SAE): ‖Γ(x_p − x̂_p)‖², ‖x − x_m‖² and e = x − x_m."""
    x_p = x @ w_p.T
    x_m = torch.relu(x_p @ w_p)  # σ(W_m x_p) with W_m = W_pᵀ
    x_p_hat = x_m @ w_p.T  # W_mᵀ x_m
    return ((x_p - x_p_hat) * gamma).square().sum(-1), (x - x_m).square().sum(-1), x - x_m


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
@pytest.mark.parametrize("weighted", [False, True])
def test_theorem4_and_5_identities_hold_per_sample(name: str, weighted: bool) -> None:
    w_p = GEOMETRIES[name]
    gamma = torch.linspace(0.4, 1.6, w_p.shape[0]) if weighted else torch.ones(w_p.shape[0])
    toy = ToyModel(w_p, sparsity=0.8)
    x, x_p = toy.sample(20_000, seed=3)
    weighted_loss, gt_loss, e = written_out_terms(w_p, gamma, x)
    # the library's building blocks are the written-out terms
    torch.testing.assert_close(tied_sae_loss(w_p.T, x_p, gamma if weighted else None), weighted_loss)
    torch.testing.assert_close(closed_form_code(w_p, x), x - e)
    # x_p − x̂_p = W_p e, so ‖Γ(x_p − x̂_p)‖² − ‖e‖² = eᵀ(W_pᵀΓ²W_p − I)e holds for every sample, not just on average
    m = w_p.T @ torch.diag(gamma.square()) @ w_p - torch.eye(w_p.shape[1])
    per_sample_gap = ((e @ m) * e).sum(-1)
    torch.testing.assert_close(weighted_loss - gt_loss, per_sample_gap, rtol=1e-4, atol=1e-5)
    assert per_sample_gap.abs().mean() > 1e-3  # the gap is not trivially 0 here

    # loss_gap_check: the left side is the mean of these terms on its sample (seed), the right side the
    # mean of eᵀ(W_pᵀΓ²W_p − I)e on an independent one (seed + 1) ...
    check = loss_gap_check(w_p, sparsity=0.8, gamma=gamma if weighted else None, n_samples=20_000, seed=3)
    assert check.l_weighted == pytest.approx(weighted_loss.mean().item(), rel=1e-5)
    assert check.l_gt == pytest.approx(gt_loss.mean().item(), rel=1e-5)
    assert check.gap == pytest.approx(per_sample_gap.mean().item(), rel=1e-4, abs=1e-6)
    _, _, e2 = written_out_terms(w_p, gamma, toy.sample(20_000, seed=4)[0])
    predicted = ((e2 @ m) * e2).sum(-1)
    assert check.predicted_gap == pytest.approx(predicted.mean().item(), rel=1e-4, abs=1e-6)
    assert check.predicted_gap_stderr == pytest.approx(predicted.std().item() / 20_000**0.5, rel=1e-4)
    # ... so the two agree to Monte-Carlo precision
    assert abs(check.z_score) < 4.0


def test_theorem4_gap_is_negative_interference_in_polygon_regime() -> None:
    # Non-positive interference makes the SAE loss *smaller* than L_GT: the SAE is rewarded for shrinking.
    check = loss_gap_check(GEOMETRIES["digon"], sparsity=0.8, n_samples=30_000)
    assert check.l_weighted == pytest.approx(0.0, abs=1e-10)  # digons: x_p is reconstructed exactly
    assert check.gap < -10 * check.gap_stderr


def test_feature_shrinking_example() -> None:
    ex = feature_shrinking_example()
    assert torch.allclose(ex["x_m"], torch.tensor([[0.5, 0.2, 0.0]]))
    assert torch.allclose(ex["x_p_hat"], ex["x_p"])


def test_theorem1_closed_form_is_a_minimum_only_with_non_positive_interference() -> None:
    for name in ("digon", "polygons"):
        check = theorem1_check(GEOMETRIES[name], sparsity=0.99, n_samples=20_000)
        assert check.is_local_minimum, name
        assert check.grad_norm_at_closed_form < 1e-3, name  # stationary (measured 0 and 5e-5)
    # random directions interfere positively: W_pᵀ is not a minimum, and a gradient step shows it
    w_p = GEOMETRIES["random"]
    random_check = theorem1_check(w_p, sparsity=0.99, n_samples=20_000)
    assert not random_check.is_local_minimum
    assert random_check.min_perturbed_loss < 0.99 * random_check.loss_at_closed_form  # measured 5% lower
    _, x_p = ToyModel(w_p, 0.99).sample(20_000, seed=0)  # theorem1_check's sample

    def loss(w_m: torch.Tensor) -> torch.Tensor:  # L_SAE written out: E‖x_p − W_mᵀ ReLU(W_m x_p)‖²
        return (x_p - torch.relu(x_p @ w_m.T) @ w_m).square().sum(-1).mean()

    w_m = w_p.T.clone().requires_grad_(True)
    at_closed_form = loss(w_m)
    at_closed_form.backward()
    assert random_check.loss_at_closed_form == pytest.approx(at_closed_form.item(), rel=1e-5)
    assert random_check.grad_norm_at_closed_form == pytest.approx(w_m.grad.norm().item(), rel=1e-4)
    with torch.no_grad():
        after_step = loss(w_m - 0.1 * w_m.grad)
    assert after_step < 0.99 * at_closed_form  # measured 3.4% lower


def test_counterexamples() -> None:
    ce = no_sparse_activation_counterexample(GEOMETRIES["digon"], sparsity=0.99)
    assert ce["loss"] < 1e-10  # a rotated linear code reconstructs perfectly ...
    assert ce["mcc"] < 0.9  # ... yet its directions are not the features
    assert too_few_latents_bound(4, 6) == pytest.approx(4 / 6)
    assert too_few_latents_bound(8, 6) == 1.0


def test_theory_bad_inputs() -> None:
    with pytest.raises(ValueError, match="gamma"):
        loss_gap_check(GEOMETRIES["digon"], sparsity=0.5, gamma=torch.ones(3), n_samples=10)
    with pytest.raises(ValueError, match="sparsity"):
        loss_gap_check(GEOMETRIES["digon"], sparsity=1.2, n_samples=10)

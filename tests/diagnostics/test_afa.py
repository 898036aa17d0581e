"""AFA diagnostics: f̃, ε_LBO and NMSE against their formulas, summaries, sources and the ZF plot."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
from sae_lens.training.activations_store import ActivationsStore

from wsae_lens.diagnostics.afa import (
    afa_diagnostics,
    afa_token_metrics,
    approximate_feature_vector,
    epsilon_lbo,
    zf_plot,
)


def hand_built_sae() -> StandardSAE:
    """d_in 2, three latents with decoder rows of norms 2, 1, 0.5 along e1, e2, (e1+e2)/√2; b_dec = (0, 3)."""
    sae = StandardSAE(StandardSAEConfig(d_in=2, d_sae=3, apply_b_dec_to_input=False))
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.5 / 2**0.5, 0.5 / 2**0.5]]))
        sae.W_enc.copy_(torch.eye(2, 3))  # latent i reads x_i (latent 2 reads nothing)
        sae.b_enc.copy_(torch.tensor([0.0, 0.0, 2.0]))  # latent 2 is always 2
        sae.b_dec.copy_(torch.tensor([0.0, 3.0]))
    return sae


def test_f_tilde_matches_formula_on_a_hand_example():
    f_tilde = approximate_feature_vector(
        torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([2.0, 1.0, 0.5]), torch.tensor([0.0, 3.0])
    )
    assert f_tilde.tolist() == [[2.0, 0.0, 1.0, 3.0]]


def test_token_metrics_match_formulas_on_a_hand_built_sae():
    sae = hand_built_sae()
    x = torch.tensor([[1.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    metrics = afa_token_metrics(sae, x)
    # token 0: acts (1, 0, 2) -> f̃ = (2, 0, 1, 3), h = 3, ‖f̃‖² = 14, ‖z‖² = 1
    # token 1: acts (0, 0, 2) -> f̃ = (0, 0, 1, 3), h = 2, ‖f̃‖² = 10, ‖z‖² = 0
    # token 2: acts (3, 4, 2) -> f̃ = (6, 4, 1, 3), h = 4, ‖f̃‖² = 62, ‖z‖² = 25
    torch.testing.assert_close(metrics.feature_norm, torch.tensor([14.0, 10.0, 62.0]).sqrt())
    torch.testing.assert_close(metrics.dense_norm, torch.tensor([1.0, 0.0, 5.0]))
    assert metrics.n_features.tolist() == [3, 2, 4]
    assert metrics.l0.tolist() == [2, 1, 3]
    torch.testing.assert_close(metrics.eps_lbo, torch.tensor([13 / (2 * 14), 10 / (1 * 10), 37 / (3 * 62)]))
    # x̂ = acts @ W_dec + b_dec
    x_hat = torch.tensor([[1.0, 0.0], [0.0, 0.0], [3.0, 4.0]]) @ torch.diag(torch.tensor([2.0, 1.0]))
    x_hat = x_hat + 2 * sae.W_dec[2] + sae.b_dec
    expected_nmse = (x - x_hat).square().sum(-1) / x.square().sum(-1)
    torch.testing.assert_close(metrics.nmse[[0, 2]], expected_nmse[[0, 2]].detach())
    assert math.isinf(metrics.nmse[1].item())  # z = 0: NMSE undefined (division by zero)


def test_eps_lbo_is_nan_when_undefined():
    value = epsilon_lbo(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0]), torch.tensor([1, 3]))
    assert value.isnan().all()


@settings(max_examples=30, deadline=None)
@given(h=st.integers(2, 30), eps=st.floats(0.0, 0.03), seed=st.integers(0, 2**31 - 1))
def test_quasi_orthogonal_codes_satisfy_the_bound(h, eps, seed):
    """ε-quasi-orthogonal unit directions: the measured ε_LBO never exceeds the true ε (the bound is tight)."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.linalg.qr(torch.randn(64, 64, generator=generator))[0][:, :h].T  # orthonormal
    directions = directions + eps / 4 * torch.randn(h, 64, generator=generator) / 8  # small overlaps
    directions = directions / directions.norm(dim=-1, keepdim=True)
    gram = directions @ directions.T
    true_eps = (gram - torch.eye(h)).abs().max().item()
    f = torch.rand(h, generator=generator) + 0.1
    z = f @ directions
    measured = epsilon_lbo(z.norm()[None], f.norm()[None], torch.tensor([h]))
    assert measured.item() <= true_eps * (1 + 1e-4) + 1e-6


def equicorrelated_code(h: int, rho: float, scale: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, f): h unit directions in R^64 with every pairwise cosine ρ, all activated at ``scale``."""
    gram = (1 - rho) * torch.eye(h, dtype=torch.float64) + rho * torch.ones(h, h, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    rotation = torch.linalg.qr(torch.randn(64, 64, generator=generator, dtype=torch.float64))[0][:h]
    directions = torch.linalg.cholesky(gram) @ rotation  # rows: unit vectors with Gram matrix G
    torch.testing.assert_close(directions @ directions.T, gram)
    f = torch.full((h,), scale, dtype=torch.float64)
    return f @ directions, f


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(2, 30),
    rho_fraction=st.floats(-0.95, 0.95),
    scale=st.floats(0.1, 10.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_eps_lbo_equals_the_interference_of_equicorrelated_codes(h, rho_fraction, scale, seed):
    """Unit directions with every pairwise cosine ρ and equal activations attain the bound: ε_LBO = |ρ|.

    ‖z‖² = fᵀGf with G = (1 − ρ)I + ρ11ᵀ, so for f = c·1: ‖z‖² − ‖f‖² = ρ h(h − 1) c² and
    ε_LBO = |ρ h(h − 1) c²| / ((h − 1) h c²) = |ρ| (ρ may be negative, down to −1/(h − 1)).
    """
    rho = rho_fraction if rho_fraction >= 0 else rho_fraction / (h - 1)
    z, f = equicorrelated_code(h, rho, scale, seed)
    measured = epsilon_lbo(z.norm()[None], f.norm()[None], torch.tensor([h]))
    assert measured.item() == pytest.approx(abs(rho), rel=1e-6, abs=1e-9)


BROKEN_EPSILONS = {
    "always 0": lambda z, f, h: torch.zeros_like(z),
    "no absolute value": lambda z, f, h: (z.square() - f.square()) / ((h - 1) * f.square()),
    "h instead of h - 1": lambda z, f, h: (z.square() - f.square()).abs() / (h * f.square()),
}


@pytest.mark.parametrize("name", sorted(BROKEN_EPSILONS))
def test_broken_eps_lbo_variants_are_rejected(name):
    """The equicorrelated check above tells ε_LBO from plausible wrong variants (and the upper bound alone cannot)."""
    cases = [(5, 0.2), (5, -0.2), (12, 0.05)]
    for epsilon in (epsilon_lbo, BROKEN_EPSILONS[name]):
        errors = []
        for h, rho in cases:
            z, f = equicorrelated_code(h, rho, 1.5, seed=h)
            measured = epsilon(z.norm()[None], f.norm()[None], torch.tensor([h])).item()
            assert measured <= abs(rho) + 1e-9  # every variant here satisfies the one-sided bound ...
            errors.append(abs(measured - abs(rho)))
        if epsilon is epsilon_lbo:
            assert max(errors) < 1e-9
        else:
            assert max(errors) > 0.01  # ... only the equality exposes it


def test_summary_shares_and_quantiles():
    sae = hand_built_sae()
    x = torch.tensor([[1.0, 0.0], [3.0, 4.0], [-5.0, 0.0], [-4.0, 3.0], [0.0, -20.0]])
    summary = afa_token_metrics(sae, x).summary()
    # by hand (see hand_built_sae): acts (1,0,2), (3,4,2), (0,0,2), (0,3,2), (0,0,2)
    # ‖f̃‖² = 14, 62, 10, 19, 10;  ‖z‖² = 1, 25, 25, 25, 400;  h = 3, 4, 2, 3, 2;  L0 = 2, 3, 1, 2, 1
    ratios = sorted([14**0.5, 62**0.5 / 5, 10**0.5 / 5, 19**0.5 / 5, 10**0.5 / 20])
    assert summary.n_tokens == 5
    assert summary.share_over_activated == pytest.approx(2 / 5)  # tokens 0 and 1
    assert summary.share_under_activated == pytest.approx(3 / 5)
    assert summary.median_ratio == pytest.approx(19**0.5 / 5)
    assert summary.mean_l0 == pytest.approx(9 / 5)
    expected_ratio_quantiles = {  # linear interpolation at q (n − 1) = 4q
        0.05: ratios[0] + 0.2 * (ratios[1] - ratios[0]),
        0.25: ratios[1],
        0.5: ratios[2],
        0.75: ratios[3],
        0.95: ratios[3] + 0.8 * (ratios[4] - ratios[3]),
    }
    assert summary.ratio_quantiles == pytest.approx(expected_ratio_quantiles)
    # ε_LBO = |‖z‖² − ‖f̃‖²| / ((h − 1)‖f̃‖²) = 13/28, 37/186, 15/10, 6/38, 390/10
    assert summary.median_eps_lbo == pytest.approx(13 / 28) and summary.n_undefined_eps_lbo == 0
    assert summary.eps_lbo_quantiles[0.25] == pytest.approx(37 / 186)
    # x̂ = (2 a_0 + c, a_1 + c + 3) with c = 1/√2 (latent 2 adds 2 · W_dec,2, b_dec = (0, 3))
    c = 0.5**0.5
    nmse = [11 + 8 * c, (19 + 12 * c) / 25, (35 + 16 * c) / 25, (26 + 14 * c) / 25, (530 + 46 * c) / 400]
    assert summary.mean_nmse == pytest.approx(sum(nmse) / 5)
    assert summary.median_nmse == pytest.approx((26 + 14 * c) / 25)
    assert "under-activated 60.0%" in summary.format() and "over-activated 40.0%" in summary.format()


def test_stream_sources_agree_and_plot_is_written(tmp_path):
    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=16, d_sae=64, k=4))
    activations = torch.randn(300, 16)
    whole = afa_token_metrics(sae, activations)
    streamed = afa_diagnostics(sae, list(activations.split(70)), batch_size=32, progress=False)
    limited = afa_diagnostics(sae, activations, max_tokens=100, progress=False)
    assert len(limited) == 100
    for name in ("dense_norm", "feature_norm", "n_features", "eps_lbo", "nmse", "l0"):
        torch.testing.assert_close(getattr(streamed, name), getattr(whole, name), equal_nan=True, msg=name)
        torch.testing.assert_close(getattr(limited, name), getattr(whole, name)[:100], equal_nan=True, msg=name)
    torch.testing.assert_close(whole.dense_norm, activations.norm(dim=-1))
    assert (whole.l0 == 4).all()
    path = zf_plot(whole, tmp_path / "plots" / "zf.png")
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="d_in"):
        afa_token_metrics(sae, torch.randn(3, 8))
    with pytest.raises(ValueError, match=".png"):
        zf_plot(whole, tmp_path / "zf.txt")


def test_activations_store_source_matches_direct_activations(tiny_model, byte_dataset):
    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=16, d_sae=64, k=4))
    hook = "blocks.0.hook_resid_post"
    sae.cfg.metadata.hook_name = hook
    sae.cfg.metadata.prepend_bos = False
    store = ActivationsStore.from_sae(
        tiny_model, sae, dataset=byte_dataset, context_size=32, streaming=False, store_batch_size_prompts=4,
        n_batches_in_buffer=2, train_batch_size_tokens=64, total_tokens=10_000,
    )
    metrics = afa_diagnostics(sae, store, max_tokens=200, batch_size=64, progress=False)
    assert len(metrics) == 200
    # the store reads the dataset's contexts in order: the first 200 tokens are those of rows 0-6
    _, cache = tiny_model.run_with_cache(torch.as_tensor(byte_dataset[:7]["input_ids"]), names_filter=hook)
    activations = cache[hook].reshape(-1, 16)[:200]
    torch.testing.assert_close(metrics.dense_norm, activations.norm(dim=-1))
    direct = afa_token_metrics(sae, activations)
    for name in ("dense_norm", "feature_norm", "n_features", "eps_lbo", "nmse", "l0"):
        torch.testing.assert_close(getattr(metrics, name), getattr(direct, name), equal_nan=True, msg=name)
    with pytest.raises(ValueError, match="max_tokens"):
        afa_diagnostics(sae, store, progress=False)

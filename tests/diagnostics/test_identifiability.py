import itertools
import json
from pathlib import Path

import pytest
import torch

from wsae_lens.diagnostics.ground_truth import cosine_matrix, evaluate_ground_truth
from wsae_lens.diagnostics.identifiability import decoder_interference, identifiability_report
from wsae_lens.diagnostics.theory import too_few_latents_bound
from wsae_lens.diagnostics.toy_model import digon_wp


def test_digon_regime_trained_sae_recovers_every_feature(digon_sae) -> None:
    sae, toy, x, x_p = digon_sae
    m = evaluate_ground_truth(sae, toy.w_p, x, x_p)
    # SAELens TopK (untied, biases), n_m = 2n, S = 0.99, 2,000 steps: measured MCC 1.000 on seeds 0, 1, 2
    # (examples/digon_recovery.py); margin 0.01 below that.
    assert m.mcc >= 0.99
    assert m.recovery["0.99"] == 1.0
    assert m.l_gt < 0.75 * m.l_gt_zero  # far better than the all-zero estimate


def brute_force_l_gt(sae, w_p: torch.Tensor, x: torch.Tensor, x_p: torch.Tensor) -> float:
    """L_GT with Π found by trying every assignment of the SAE's latents to distinct features (n_m ≤ n).

    Π maximises the summed *signed* cosine; feature j is estimated by a_π(j) ⟨d_π(j), w_j⟩ / ‖w_j‖² and
    by 0 when no latent is assigned to it (the definition in ground_truth.matched_feature_estimates).
    """
    w_dec = sae.W_dec.detach().double()
    features = w_p.T.double()
    cos = (w_dec / w_dec.norm(dim=1, keepdim=True)) @ (features / features.norm(dim=1, keepdim=True)).T
    n_latents, n_features = cos.shape
    assert n_latents <= n_features
    best = max(
        itertools.permutations(range(n_features), n_latents),
        key=lambda cols: sum(cos[i, j].item() for i, j in enumerate(cols)),
    )
    was_training = sae.training
    sae.eval()
    with torch.no_grad():
        acts = sae.encode(x_p).double()
    sae.train(was_training)
    estimate = torch.zeros(x.shape, dtype=torch.float64)
    for latent, feature in enumerate(best):
        scale = (w_dec[latent] @ features[feature]) / (features[feature] @ features[feature])
        estimate[:, feature] = acts[:, latent] * scale
    return (x.double() - estimate).square().sum(-1).mean().item()


def test_too_few_latents_cannot_recover_every_feature(digon_sae, digon_sae_too_few_latents) -> None:
    sae, toy, x, x_p = digon_sae_too_few_latents
    few = evaluate_ground_truth(sae, toy.w_p, x, x_p)
    full = evaluate_ground_truth(digon_sae[0], toy.w_p, x, x_p)
    assert too_few_latents_bound(sae.cfg.d_sae, toy.n_features) == pytest.approx(4 / 6)
    # L_GT of the 4-latent SAE, recomputed by brute force over all 360 latent-to-feature assignments
    assert few.l_gt == pytest.approx(brute_force_l_gt(sae, toy.w_p, x, x_p), rel=1e-5)
    # With n_m = 4 < n = 6, any SAE leaves two features with estimate 0, so its L_GT is at least the
    # energy E[x_j² + x_k²] of the two least energetic features (≈ 2 · 0.01 / 3 at S = 0.99) ...
    energy = x.double().square().mean(0)
    floor = min((energy[j] + energy[k]).item() for j, k in itertools.combinations(range(toy.n_features), 2))
    assert floor == pytest.approx(2 * 0.01 / 3, rel=0.1)
    assert few.l_gt >= floor
    # ... while n_m = 12 latents get well below that floor (measured 0.0027 = 0.40 · floor, seed 0).
    assert full.l_gt < 0.6 * floor
    # Signed cosines (a latent on w is not the digon partner −w): the 12-latent SAE has every feature at ≥ 0.99.
    signed_best_full = cosine_matrix(digon_sae[0].W_dec, toy.w_p.T, signed=True).max(dim=0).values
    assert (signed_best_full >= 0.99).all()


def test_report_conditions_table_json_and_plot(digon_sae, digon_sae_too_few_latents, tmp_path: Path) -> None:
    sae, toy, x, _ = digon_sae
    report = identifiability_report(sae, w_p=toy.w_p, x=x, sparsity=0.99)
    assert report.activation == "TopK"
    assert report.failing_conditions == []
    assert all(report.conditions.values())
    assert report.ground_truth == evaluate_ground_truth(sae, toy.w_p, x)
    was_training = sae.training
    sae.eval()
    with torch.no_grad():
        direct_l0 = (sae.encode(x @ toy.w_p.T) != 0).float().sum(-1).mean().item()
    sae.train(was_training)
    assert report.mean_l0 == pytest.approx(direct_l0) and 0 < direct_l0 < sae.cfg.d_sae
    assert report.interference == decoder_interference(sae.W_dec)
    table = report.format_table()
    assert "MCC / MMCS" in table and "all known conditions hold" in table
    data = json.loads(report.to_json(tmp_path / "report.json"))
    assert data["conditions"] == report.conditions
    assert (tmp_path / "report.json").is_file()
    assert report.plot(tmp_path / "report.png").stat().st_size > 1000

    few = identifiability_report(digon_sae_too_few_latents[0], w_p=toy.w_p, x=x, sparsity=0.5)
    assert set(few.failing_conditions) == {"feature sparsity S ≥ 0.99", "enough latents n_m ≥ n"}
    assert "fails:" in few.format_table()

    # without ground truth: S and n are unknown, not guessed
    blind = identifiability_report(sae, torch.randn(256, sae.cfg.d_in))
    assert blind.conditions["enough latents n_m ≥ n"] is None
    assert blind.ground_truth is None


def test_decoder_interference_of_a_digon_dictionary() -> None:
    w = digon_wp(3, 3).T  # 3 antipodal pairs on orthogonal axes: 3 of 15 pairs at cos −1, the rest 0
    summary = decoder_interference(w)
    assert summary.negative_share == pytest.approx(3 / 15)
    assert summary.max_abs_cos == pytest.approx(1.0)
    assert sum(summary.histogram[1]) == 15


def test_sae_with_wrong_d_in_is_rejected(digon_sae) -> None:
    sae, _, _, _ = digon_sae
    w_p = digon_wp(5, 2)  # n_p = 5 but the SAE has d_in = 4
    x = torch.rand(8, 7)
    with pytest.raises(ValueError, match="d_in=4 but W_p has n_p=5"):
        evaluate_ground_truth(sae, w_p, x)
    with pytest.raises(ValueError, match="d_in=4 but W_p has n_p=5"):
        identifiability_report(sae, w_p=w_p, x=x)
    with pytest.raises(ValueError, match="sparsity"):
        identifiability_report(sae, sparsity=1.0)

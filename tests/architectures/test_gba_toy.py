"""GBA on the imbalanced sparse-coding toy (arXiv 2506.14002) against SAELens's TopK k = 30.

Configuration (the "GBA fitted range" row of examples/reproduce_gba_toy.py): width 2,048, batch 512, Adam
lr 1e-2 decayed linearly to 0 over the last 600 of 2,000 SAETrainer steps, bias updates every T = 10 steps
(the paper's T = 50 gives only 40 updates in this budget), untied, K = 10 targets 0.1 → 0.05 (from just
above the toy's per-feature firing rate ≈ 0.09 down to about half of it). Measured (two threads): FRR(0.9) =
0.992 / 1.000 / 1.000 on seeds 0 / 1 / 2 (0.977 / 0.992 / 1.000 on seeds 3–5); TopK k = 30 on seed 0:
FRR(0.8) ≤ 0.04, FRR(0.9) = 0.000. Asserted: GBA FRR(0.9) ≥ 0.95 on each of seeds 0–2 (margins 0.042 /
0.05 / 0.05, i.e. 5–6 features), and GBA beats TopK k = 30 by ≥ 0.5 at both τ on seed 0. The paper's tied
0.1 → 1e-3 default reaches 0.95 on only 3 of seeds 0–5 here (docs/gba.md).

The 3-sparse toy (every sample 3-sparse, each feature fires at rate 3/128 ≈ 0.023, the regime of the paper's
recovery theorem): width 512, 1,000 steps (decay over the last 300), untied, targets 0.02 → 2e-4, i.e. the top
target just below the features' rate. Measured (two threads): the worst-recovered feature has best cosine
0.98 on seeds 0, 1 and 2; the same SAE with targets 0.5 → 0.1 (all above the features' rate) recovers none at
τ = 0.8. Asserted: every feature at cosine ≥ 0.95 on each seed (margin 0.03), and FRR(0.8) ≤ 0.1 for the
wrong range (margin 0.1).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from sae_lens import TopKTrainingSAEConfig
from sae_lens.saes.sae import TrainingSAEConfig

from wsae_lens import GBATrainingSAE, GBATrainingSAEConfig
from wsae_lens.diagnostics.ground_truth import best_cosine_per_feature
from wsae_lens.diagnostics.sparse_coding_toy import SparseCodingToy, make_toy_sae, toy_recovery, train_on_toy

STEPS, BATCH, LR, DECAY, WIDTH = 2000, 512, 1e-2, 600, 2048


def _train_on_imbalanced_toy(cfg: TrainingSAEConfig, seed: int) -> dict[float, float]:
    """FRR(0.8), FRR(0.9) of the SAE ``cfg`` trained on seed ``seed``'s imbalanced toy."""
    toy = SparseCodingToy(n_features=128, d=42, sparsities=(3, 20), seed=seed)
    sae = train_on_toy(make_toy_sae(cfg, seed), toy, STEPS, BATCH, LR, data_seed=seed, lr_decay_steps=DECAY)
    if isinstance(cfg, GBATrainingSAEConfig):
        assert sae.bias.min() >= -1.0 and sae.bias.max() <= 0.0
    return toy_recovery(sae, toy)


@pytest.fixture(scope="module")
def fitted_gba_frr() -> Callable[[int], dict[float, float]]:
    """FRR of the fitted-range GBA per seed, trained once per seed for the whole module."""
    cfg = GBATrainingSAEConfig(d_in=42, d_sae=WIDTH, update_interval=10, tied_weights=False, freq_low=0.05)
    return functools.cache(lambda seed: _train_on_imbalanced_toy(cfg, seed))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gba_recovers_95_percent_of_the_imbalanced_toy(fitted_gba_frr, seed):
    assert fitted_gba_frr(seed)[0.9] >= 0.95, fitted_gba_frr(seed)


def test_gba_beats_topk30_on_the_imbalanced_toy(fitted_gba_frr):
    gba_frr = fitted_gba_frr(0)
    topk_frr = _train_on_imbalanced_toy(TopKTrainingSAEConfig(d_in=42, d_sae=WIDTH, k=30), 0)
    for tau in (0.8, 0.9):
        assert gba_frr[tau] >= topk_frr[tau] + 0.5, (tau, gba_frr, topk_frr)


def _train_on_3_sparse_toy(seed: int, **gba_options: Any) -> tuple[SparseCodingToy, GBATrainingSAE]:
    """Untied GBA, width 512, 1,000 steps on the toy whose samples are all 3-sparse; returns (toy, sae)."""
    toy = SparseCodingToy(n_features=128, d=42, sparsities=(3,), seed=seed)
    cfg = GBATrainingSAEConfig(d_in=42, d_sae=512, update_interval=10, tied_weights=False, **gba_options)
    sae = train_on_toy(make_toy_sae(cfg, seed), toy, 1000, BATCH, LR, data_seed=seed, lr_decay_steps=300)
    return toy, sae


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gba_recovers_every_feature_of_the_3_sparse_toy(seed):
    toy, sae = _train_on_3_sparse_toy(seed, freq_high=0.02)
    worst = best_cosine_per_feature(sae.W_dec.detach(), toy.true_directions).min().item()
    assert worst >= 0.95, worst


def test_gba_with_targets_above_the_feature_rate_recovers_nothing():
    toy, sae = _train_on_3_sparse_toy(0, freq_high=0.5, freq_low=0.1)
    assert toy_recovery(sae, toy)[0.8] <= 0.1

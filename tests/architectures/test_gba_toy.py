"""GBA on the imbalanced sparse-coding toy (arXiv 2506.14002) against SAELens's TopK k = 30.

Configuration (the defaults of examples/reproduce_gba_toy.py except the step count): width 2,048, batch
512, Adam lr 1e-2, 2,000 SAETrainer steps, bias updates every T = 10 steps (the paper's T = 50 gives only
40 updates in this budget), seed 0. Measured with this configuration (two threads): GBA FRR(0.8) = 1.000,
FRR(0.9) = 0.977 (seeds 1–5: 0.922, 0.930, 0.977, 0.953, 0.914, so the published ≥ 0.95 holds on half the
seeds); TopK k = 30 FRR(0.8) ≤ 0.04, FRR(0.9) = 0.000. Asserted: GBA FRR(0.9) ≥ 0.95 (margin 0.027 on this
seed) and GBA beats TopK k = 30 by ≥ 0.5 at both τ. See README, "Group bias adaptation".

The 3-sparse toy (every sample 3-sparse, each feature fires at rate 3/128 ≈ 0.023, the regime of the paper's
recovery theorem): width 512, 1,000 steps (decay over the last 300), untied, targets 0.02 → 2e-4, i.e. the top
target just below the features' rate. Measured (two threads): the worst-recovered feature has best cosine
0.98 on seeds 0, 1 and 2; the same SAE with targets 0.5 → 0.1 (all above the features' rate) recovers none at
τ = 0.8. Asserted: every feature at cosine ≥ 0.95 on each seed (margin 0.03), and FRR(0.8) ≤ 0.1 for the
wrong range (margin 0.1).
"""

from __future__ import annotations

import pytest
from sae_lens import TopKTrainingSAEConfig

from wsae_lens import GBATrainingSAEConfig
from wsae_lens.diagnostics.ground_truth import best_cosine_per_feature
from wsae_lens.diagnostics.sparse_coding_toy import SparseCodingToy, make_toy_sae, toy_recovery, train_on_toy

STEPS, BATCH, LR, DECAY, WIDTH, SEED = 2000, 512, 1e-2, 600, 2048, 0


@pytest.fixture(scope="module")
def toy() -> SparseCodingToy:
    return SparseCodingToy(n_features=128, d=42, sparsities=(3, 20), seed=SEED)


def test_gba_recovers_features_and_beats_topk30(toy):
    gba_cfg = GBATrainingSAEConfig(d_in=42, d_sae=WIDTH, update_interval=10)
    gba = train_on_toy(make_toy_sae(gba_cfg, SEED), toy, STEPS, BATCH, LR, data_seed=SEED, lr_decay_steps=DECAY)
    topk_cfg = TopKTrainingSAEConfig(d_in=42, d_sae=WIDTH, k=30)
    topk = train_on_toy(make_toy_sae(topk_cfg, SEED), toy, STEPS, BATCH, LR, data_seed=SEED, lr_decay_steps=DECAY)
    gba_frr, topk_frr = toy_recovery(gba, toy), toy_recovery(topk, toy)
    assert gba_frr[0.9] >= 0.95, gba_frr
    for tau in (0.8, 0.9):
        assert gba_frr[tau] >= topk_frr[tau] + 0.5, (tau, gba_frr, topk_frr)
    assert gba.bias.min() >= -1.0 and gba.bias.max() <= 0.0


def _train_on_3_sparse_toy(seed: int, **gba_options: object):  # type: ignore[no-untyped-def]
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

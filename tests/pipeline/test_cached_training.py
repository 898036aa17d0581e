"""Epochs over in-memory activations, the short-budget defaults, and AuxK actually running."""

from __future__ import annotations

import pytest
import torch
from sae_lens.saes.sae import TrainingSAE, TrainingSAEConfig
from sae_lens.training.sae_trainer import SAETrainer

from tests.conftest import tiny_runner_config_dict
from wsae_lens.pipeline.cached_training import EpochBatches, train_on_activations
from wsae_lens.pipeline.loading import DEAD_AFTER_TOKENS, load_runner_config


def test_every_token_is_read_once_per_epoch_in_a_new_order():
    activations = torch.arange(1000, dtype=torch.float32)[:, None].repeat(1, 3)
    ends = []
    batches = EpochBatches(activations, batch_size=64, seed=0, on_epoch_end=ends.append)
    epochs = [torch.cat([next(batches) for _ in range(batches.batches_per_epoch)])[:, 0] for _ in range(3)]
    for epoch in epochs:
        assert torch.equal(epoch.sort().values, activations[:, 0])  # each token exactly once
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[1], epochs[2])  # reshuffled
    assert ends == [1, 2] and batches.epoch == 3  # the end of epoch 3 is announced when epoch 4 starts


def test_short_budget_defaults_fill_only_unset_saelens_fields(tmp_path):
    cfg = tiny_runner_config_dict(tmp_path)
    cfg.update(train_batch_size_tokens=4096, training_tokens=400 * 4096)
    inputs = load_runner_config(cfg)
    assert inputs.config["dead_feature_window"] == -(-DEAD_AFTER_TOKENS // 4096) == 13
    assert inputs.config["lr_warm_up_steps"] == 20  # 5% of 400 steps
    assert "dead_feature_window" not in cfg  # the input is not mutated
    cfg["dead_feature_window"] = 777
    assert load_runner_config(cfg).config["dead_feature_window"] == 777
    assert load_runner_config(cfg).filled_defaults == {"lr_warm_up_steps": 20}


def test_auxk_loss_is_non_zero_once_latents_are_dead_in_a_short_run(tmp_path):
    """With the defaults, a latent is dead after 50k tokens: at 4,096 tokens a step, AuxK runs from step 14."""
    cfg = tiny_runner_config_dict(tmp_path, architecture="topk", d_sae=512, k=2)
    cfg.update(train_batch_size_tokens=4096, training_tokens=30 * 4096)
    runner_cfg = load_runner_config(cfg).runner_config()
    torch.manual_seed(0)
    sae = TrainingSAE.from_dict(TrainingSAEConfig.from_dict(runner_cfg.get_training_sae_cfg_dict()).to_dict())
    data = torch.randn(4096, 16) @ torch.randn(16, 16)
    trainer = SAETrainer(cfg=runner_cfg.to_sae_trainer_config(), sae=sae, data_provider=iter(()))
    aux = []
    for step in range(20):
        output = trainer.step(data)
        trainer.n_training_steps += 1
        aux.append(float(output.losses["auxiliary_reconstruction_loss"]))
    assert all(a == 0 for a in aux[:13])  # no latent can be dead before the window
    assert int(trainer.dead_neurons.sum()) > 0 and all(a > 0 for a in aux[14:])


def test_training_on_activations_improves_on_the_untrained_sae(tmp_path):
    cfg = tiny_runner_config_dict(tmp_path, architecture="topk", d_sae=64, k=4)
    cfg.update(train_batch_size_tokens=256, training_tokens=8 * 2048, lr=1e-2)
    cfg["sae"]["normalize_activations"] = "expected_average_only_in"
    runner_cfg = load_runner_config(cfg).runner_config()
    torch.manual_seed(0)
    mixing = torch.randn(8, 16)
    data = (torch.randn(2048, 8).relu() @ mixing) + 5.0  # sparse-ish codes, a large mean
    held_out = (torch.randn(512, 8).relu() @ mixing) + 5.0
    sae = TrainingSAE.from_dict(TrainingSAEConfig.from_dict(runner_cfg.get_training_sae_cfg_dict()).to_dict())
    sae, curve = train_on_activations(sae, runner_cfg, data, epochs=8, seed=0, held_out=held_out)
    assert curve.tokens == [2048 * epoch for epoch in range(1, 9)]
    torch.testing.assert_close(sae.b_dec, data.mean(0), rtol=0.5, atol=0.5)  # started at the mean, stayed near it
    assert curve.explained_variance[-1] > curve.initial_explained_variance + 0.2
    assert curve.explained_variance[-1] == pytest.approx(max(curve.explained_variance), abs=0.02)

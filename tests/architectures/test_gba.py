"""architecture="gba": registration, save/load, gradient-free clamped biases, the update rule, resume."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sae_lens import SAE, LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, TrainingSAE
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY
from sae_lens.saes.sae import TrainStepInput
from sae_lens.training.sae_trainer import SAETrainer

from tests.conftest import tiny_runner_config_dict
from wsae_lens import GBASAE, GBATrainingSAE, GBATrainingSAEConfig
from wsae_lens.architectures.gba import ADAPTATION_STATE, adapt_biases, group_target_frequencies
from wsae_lens.diagnostics.sparse_coding_toy import SparseCodingToy
from wsae_lens.registration import register_architectures


def _step_input(x: torch.Tensor, step: int = 0) -> TrainStepInput:
    return TrainStepInput(x, {}, None, step, False)


def _train_steps(sae: GBATrainingSAE, x: torch.Tensor, n: int, lr: float = 1e-2) -> None:
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    for i in range(n):
        sae.training_forward_pass(_step_input(x, i)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test_registered_idempotently_with_sae_lens():
    register_architectures()
    register_architectures()
    assert SAE_CLASS_REGISTRY["gba"][0] is GBASAE
    assert SAE_TRAINING_CLASS_REGISTRY["gba"][0] is GBATrainingSAE


@pytest.mark.parametrize(
    ("field", "value"),
    [("n_groups", 0), ("freq_low", 0.5), ("n_groups", 33), ("freq_high", 1.5), ("update_interval", 0), ("bias_min", 0.5)],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        GBATrainingSAEConfig(d_in=4, d_sae=32, **{field: value})


@pytest.mark.parametrize("tied", [True, False])
def test_save_load_round_trip(tied, tmp_path):
    torch.manual_seed(0)
    sae = GBATrainingSAE(GBATrainingSAEConfig(d_in=6, d_sae=20, n_groups=4, update_interval=3, tied_weights=tied))
    x = torch.randn(32, 6) / math.sqrt(6)
    _train_steps(sae, x, 5)  # one update done, two steps into the next window
    assert sae.steps_since_update.item() == 2 and sae.bias.lt(0).any()

    sae.save_model(tmp_path / "training")
    restored = TrainingSAE.load_from_disk(tmp_path / "training")
    assert isinstance(restored, GBATrainingSAE)
    original = sae.state_dict()
    for name, tensor in restored.state_dict().items():
        assert tensor.dtype == original[name].dtype, name
        assert torch.equal(tensor, original[name]), name
    assert set(restored.state_dict()) == set(original)

    sae.eval()
    expected = sae(x)
    sae.save_inference_model(tmp_path / "inference")
    for path in (tmp_path / "inference", tmp_path / "training"):  # inference form, and a training checkpoint
        inference = SAE.load_from_disk(path)
        assert isinstance(inference, GBASAE)
        assert not set(ADAPTATION_STATE) & set(inference.state_dict())
        torch.testing.assert_close(inference(x), expected, rtol=1e-5, atol=1e-6)
        assert torch.equal(inference.threshold, -sae.bias)


def test_biases_get_no_gradient_and_stay_in_range():
    torch.manual_seed(0)
    cfg = GBATrainingSAEConfig(d_in=5, d_sae=16, n_groups=2, freq_high=0.5, freq_low=0.01, update_interval=1,
                               bias_step_down=2.0, bias_step_up=2.0)  # big steps: both bounds get hit
    sae = GBATrainingSAE(cfg)
    assert "bias" not in dict(sae.named_parameters()) and not sae.bias.requires_grad
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-2)
    assert all(p is not sae.bias for group in optimizer.param_groups for p in group["params"])
    seen_floor = seen_zero = False
    for i in range(40):
        x = torch.randn(64, 5) * (0.2 if i % 2 else 2.0)
        sae.training_forward_pass(_step_input(x, i)).loss.backward()
        assert sae.bias.grad is None
        optimizer.step()
        optimizer.zero_grad()
        assert sae.bias.min() >= -1.0 and sae.bias.max() <= 0.0
        seen_floor |= bool((sae.bias == -1.0).any())
        seen_zero |= bool(((sae.bias == 0.0) & (sae.last_window_freq < cfg.dead_freq_eps)).any())
    assert seen_floor and seen_zero


def test_update_rule_on_controlled_input():
    # tied, directions ±e1 (group 0) and ±e2 (group 1): h = (x1, −x1, x2, −x2); targets 0.5 and 0.25
    cfg = GBATrainingSAEConfig(d_in=2, d_sae=4, n_groups=2, freq_high=0.5, freq_low=0.25, update_interval=2,
                               bias_step_down=0.1, bias_step_up=0.1)
    sae = GBATrainingSAE(cfg)
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
        sae.b_dec.zero_()
        sae.bias.fill_(-0.1)  # a neuron fires iff h > 0.1
    sae.training_forward_pass(_step_input(torch.tensor([[0.5, 0.3], [0.9, 0.05]])))
    assert sae.fire_count.tolist() == [2, 0, 1, 0] and sae.steps_since_update.item() == 1
    assert torch.equal(sae.bias, torch.full((4,), -0.1))  # no update before T steps
    sae.training_forward_pass(_step_input(torch.tensor([[0.7, 0.0], [0.3, 0.0]]), 1))
    # neuron 0: p = 1 > 0.5, r = 0.9 − 0.1          → b − 0.1·0.8
    # neuron 1: p = 0 < ε, r̄_0 = 0.8 (only r_0 > 0)   → b + 0.1·0.8
    # neuron 2: p = 1/4, not > 0.25 and not < ε        → unchanged
    # neuron 3: p = 0 < ε, r̄_1 = 0.3 − 0.1 = 0.2      → b + 0.1·0.2
    torch.testing.assert_close(sae.bias, torch.tensor([-0.18, -0.02, -0.1, -0.08]))
    torch.testing.assert_close(sae.last_window_freq, torch.tensor([1.0, 0.0, 0.25, 0.0]))
    assert sae.fire_count.sum() == 0 and sae.tokens_since_update.item() == 0 and sae.steps_since_update.item() == 0
    assert torch.isinf(sae.peak_preact).all()


def test_update_rule_clamps_at_both_bounds():
    bias = torch.tensor([-0.95, -0.02])
    new = adapt_biases(bias, torch.tensor([0.9, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([0, 0]),
                       torch.tensor([0.1]), step_down=0.1, step_up=0.1, dead_freq_eps=1e-6, bias_min=-1.0)
    assert new.tolist() == [-1.0, 0.0]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-1, 0), st.floats(0, 1), st.floats(-3, 3)), min_size=1, max_size=12),
    st.floats(0, 2),
)
def test_update_rule_moves_in_the_documented_direction(neurons, step):
    bias, rate, peak = (torch.tensor(column, dtype=torch.float32) for column in zip(*neurons))
    group = torch.zeros(len(neurons), dtype=torch.int64)
    target = torch.tensor([0.3])
    new = adapt_biases(bias, rate, peak, group, target, step, step, 1e-6, -1.0)
    assert new.min() >= -1.0 and new.max() <= 0.0
    too_frequent = rate > 0.3
    positive_peaks = peak[peak > 0]
    group_mean = positive_peaks.mean() if positive_peaks.numel() else torch.tensor(0.0)
    too_rare = ~too_frequent & (rate < 1e-6)
    expected = torch.where(too_frequent, bias - step * peak, torch.where(too_rare, bias + step * group_mean, bias))
    torch.testing.assert_close(new, expected.clamp(-1.0, 0.0))
    consistent = peak > 0  # a neuron that fired has a positive peak: then down means down
    assert (new[too_frequent & consistent] <= bias[too_frequent & consistent]).all()
    assert (new[too_rare] >= bias[too_rare]).all()


def test_group_targets_are_geometric():
    targets = group_target_frequencies(10, 0.1, 1e-3)
    torch.testing.assert_close(targets[[0, -1]], torch.tensor([0.1, 1e-3]))
    ratios = targets[1:] / targets[:-1]
    torch.testing.assert_close(ratios, torch.full((9,), 0.01 ** (1 / 9)))
    assert group_target_frequencies(1, 0.05, 0.05).tolist() == pytest.approx([0.05])


def _metrics_on_controlled_input() -> tuple[dict[str, float], dict[str, float]]:
    """Metrics after each of two steps on the controlled input of test_update_rule_on_controlled_input, with a
    bias floor of −0.15 that neuron 0 hits at the update (end of step 2)."""
    cfg = GBATrainingSAEConfig(d_in=2, d_sae=4, n_groups=2, freq_high=0.5, freq_low=0.25, update_interval=2,
                               bias_step_down=0.1, bias_step_up=0.1, bias_min=-0.15)
    sae = GBATrainingSAE(cfg)
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
        sae.b_dec.zero_()
        sae.bias.fill_(-0.1)

    def metrics_after(x: torch.Tensor, step: int) -> dict[str, float]:
        out = sae.training_forward_pass(_step_input(x, step))
        return {name: float(value()) for name, value in out.metrics.items()}  # type: ignore[operator]

    first = metrics_after(torch.tensor([[0.5, 0.3], [0.9, 0.05]]), 0)
    return first, metrics_after(torch.tensor([[0.7, 0.0], [0.3, 0.0]]), 1)


# step 1: neuron 0 fires on both tokens, neuron 2 on one → group 0 (neurons 0, 1): 2/4, group 1 (2, 3): 1/4
EXPECTED_FIRST_METRICS = {
    "gba/group_0_freq": 0.5, "gba/group_0_target": 0.5, "gba/group_1_freq": 0.25, "gba/group_1_target": 0.25,
    "gba/bias_mean": -0.1, "gba/bias_min": -0.1, "gba/bias_max": -0.1, "gba/bias_at_floor_frac": 0.0,
    "gba/dead_neurons": 0.0,  # no window finished yet
}
# step 2: only neuron 0 fires (2/4 in group 0, 0 in group 1); then the update (window rates 1, 0, 1/4, 0):
# b = (max(−0.1 − 0.1·0.8, −0.15), −0.1 + 0.1·0.8, −0.1, −0.1 + 0.1·0.2) = (−0.15, −0.02, −0.1, −0.08)
EXPECTED_SECOND_METRICS = {
    "gba/group_0_freq": 0.5, "gba/group_0_target": 0.5, "gba/group_1_freq": 0.0, "gba/group_1_target": 0.25,
    "gba/bias_mean": -0.35 / 4, "gba/bias_min": -0.15, "gba/bias_max": -0.02, "gba/bias_at_floor_frac": 0.25,
    "gba/dead_neurons": 2.0,  # neurons 1 and 3 never fired in the window
}


def test_metrics_report_group_frequency_bias_and_dead():
    first, second = _metrics_on_controlled_input()
    assert first == pytest.approx(EXPECTED_FIRST_METRICS)
    assert second == pytest.approx(EXPECTED_SECOND_METRICS)


def test_metrics_expose_a_bias_update_with_the_wrong_sign(monkeypatch):
    def wrong_sign(bias, firing_rate, peak_preact, *args):  # raises too-frequent neurons, lowers rare ones
        return adapt_biases(bias, firing_rate, -peak_preact, *args)

    monkeypatch.setattr("wsae_lens.architectures.gba.adapt_biases", wrong_sign)
    first, second = _metrics_on_controlled_input()
    assert first == pytest.approx(EXPECTED_FIRST_METRICS)  # no update yet
    assert second != pytest.approx(EXPECTED_SECOND_METRICS)
    assert second["gba/bias_at_floor_frac"] == 0.0  # neuron 0 moved up (to −0.02) instead of down to the floor


def test_runner_trains_and_saves_gba(tmp_path, tiny_model, byte_dataset):
    cfg = LanguageModelSAERunnerConfig.from_dict(
        {
            **tiny_runner_config_dict(tmp_path, "gba", update_interval=4, normalize_activations="expected_average_only_in"),
            "n_batches_for_norm_estimate": 4,
        }
    )
    sae = LanguageModelSAETrainingRunner(cfg, override_model=tiny_model, override_dataset=byte_dataset).run()
    assert sae.cfg.architecture() == "gba"
    loaded = SAE.load_from_disk(tmp_path / "output")
    assert isinstance(loaded, GBASAE)
    assert loaded.threshold.max() > 0  # biases were adapted (θ = −b)


def _trainer(sae: GBATrainingSAE, data, total_steps: int, batch: int, checkpoint_path=None) -> SAETrainer:
    cfg = SAETrainerConfig(
        total_training_samples=total_steps * batch,
        train_batch_size_samples=batch,
        lr=3e-3,
        lr_end=3e-3,
        n_checkpoints=1 if checkpoint_path else 0,
        checkpoint_path=str(checkpoint_path) if checkpoint_path else None,
        logger=LoggingConfig(log_to_wandb=False),
    )
    return SAETrainer(cfg, sae, data)


def _skip(iterator, n: int):
    for _ in range(n):
        next(iterator)
    return iterator


def test_resume_from_checkpoint_equals_uninterrupted_training(tmp_path):
    toy = SparseCodingToy(n_features=32, d=12, seed=0)
    cfg = GBATrainingSAEConfig(d_in=12, d_sae=48, n_groups=4, freq_high=0.3, freq_low=0.01, update_interval=8)
    steps, batch = 40, 32

    torch.manual_seed(0)
    uninterrupted = _trainer(GBATrainingSAE(cfg), toy.batches(batch), steps, batch, tmp_path / "ckpt").fit()
    checkpoint = next(p for p in (tmp_path / "ckpt").iterdir() if p.is_dir())
    consumed = torch.load(checkpoint / "trainer_state.pt")["n_training_samples"] // batch
    interrupted_state = TrainingSAE.load_from_disk(checkpoint)
    assert 0 < consumed < steps and interrupted_state.steps_since_update.item() != 0  # mid-window

    def resume(reset_adaptation_state: bool) -> GBATrainingSAE:
        torch.manual_seed(1)  # different initial weights: everything must come from the checkpoint
        sae = GBATrainingSAE(cfg)
        trainer = _trainer(sae, _skip(toy.batches(batch), consumed), steps, batch)
        trainer.load_trainer_state(checkpoint)
        sae.load_weights_from_checkpoint(checkpoint)
        if reset_adaptation_state:  # control: what a checkpoint without the adaptation state would give
            sae.fire_count.zero_()
            sae.steps_since_update.zero_()
            sae.tokens_since_update.zero_()
        return trainer.fit()

    resumed = resume(reset_adaptation_state=False).state_dict()
    for name, tensor in uninterrupted.state_dict().items():
        assert torch.equal(resumed[name], tensor), name
    control = resume(reset_adaptation_state=True).state_dict()
    assert not torch.equal(control["bias"], uninterrupted.state_dict()["bias"])

"""The top-AFA SAE: selection in the SAE, AFA loss, save/load round trip and a SAELens runner run."""

from __future__ import annotations

import json

import pytest
import torch
from sae_lens import SAE, LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner
from sae_lens.saes.sae import TrainStepInput

from tests.conftest import tiny_runner_config_dict
from wsae_lens import TopAFASAE, TopAFATrainingSAE, TopAFATrainingSAEConfig
from wsae_lens.architectures.afa_selection import full_sort_afa_selection


def step_input(x: torch.Tensor, d_sae: int, dead: bool = False) -> TrainStepInput:
    mask = torch.full((d_sae,), dead, dtype=torch.bool)
    return TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=mask, n_training_steps=0, is_logging_step=False)


@pytest.fixture
def training_sae() -> TopAFATrainingSAE:
    sae = TopAFATrainingSAE(TopAFATrainingSAEConfig(d_in=8, d_sae=32, afa_candidates=2))
    with torch.no_grad():  # a non-trivial decoder bias and uneven decoder norms
        sae.b_dec.copy_(torch.randn(8) * 0.3)
        sae.W_dec.mul_(torch.rand(32, 1) + 0.5)
        # a strong encoder: at init all positive scores together reach only 1.4% of the target norm, so the rule
        # would keep every positive latent and any selection rule would pass; ×150 puts the target mid-prefix
        sae.W_enc.mul_(150.0)
    return sae


@pytest.mark.parametrize("afa_target", ["input_minus_b_dec", "input"])
def test_encode_keeps_the_reference_rule_selection(training_sae, afa_target):
    training_sae.cfg.afa_target = afa_target
    x = torch.randn(64, 8) * 3
    feature_acts = training_sae.encode(x)
    hidden_pre = (x - training_sae.b_dec) @ training_sae.W_enc + training_sae.b_enc
    scores = (hidden_pre * training_sae.W_dec.norm(dim=-1)).relu()  # rescale_acts_by_decoder_norm in training
    target = (x - training_sae.b_dec if afa_target == "input_minus_b_dec" else x).norm(dim=-1)
    expected = full_sort_afa_selection(scores.detach(), target)
    torch.testing.assert_close(feature_acts, scores * expected.mask)
    # the rule is exercised: most tokens keep some but not all of their positive latents
    positive = (scores > 0).sum(-1)
    assert ((expected.k > 0) & (expected.k < positive)).float().mean() > 0.5
    # the kept code's norm is the nearest prefix norm to the target: no single latent more or less is nearer
    kept_norm = feature_acts.norm(dim=-1)
    assert ((kept_norm - target).abs() <= (scores.norm(dim=-1) - target).abs() + 1e-5).all()


def test_training_losses_and_gradients(training_sae):
    x = torch.randn(32, 8) * 3
    output = training_sae.training_forward_pass(step_input(x, 32, dead=True))
    assert set(output.losses) == {"mse_loss", "auxiliary_reconstruction_loss", "afa_loss"}
    # the kept code's norm from the reference rule on the written-out scores (as in the encode test above)
    target = (x - training_sae.b_dec).norm(dim=-1)
    with torch.no_grad():
        hidden_pre = (x - training_sae.b_dec) @ training_sae.W_enc + training_sae.b_enc
        scores = (hidden_pre * training_sae.W_dec.norm(dim=-1)).relu()
        kept_norm = (scores * full_sort_afa_selection(scores, target).mask).norm(dim=-1)
    expected_afa = training_sae.cfg.afa_coefficient * (kept_norm - target).square().mean()
    torch.testing.assert_close(output.losses["afa_loss"], expected_afa)
    assert output.losses["auxiliary_reconstruction_loss"] > 0  # SAELens's AuxK with every latent dead
    output.loss.backward()
    assert torch.isfinite(training_sae.W_enc.grad).all() and training_sae.W_enc.grad.abs().sum() > 0


def test_bad_config_fields_raise_clear_errors():
    with pytest.raises(ValueError, match="afa_target"):
        TopAFATrainingSAEConfig(d_in=8, d_sae=32, afa_target="x")
    with pytest.raises(ValueError, match="afa_coefficient"):
        TopAFATrainingSAEConfig(d_in=8, d_sae=32, afa_coefficient=-1.0)
    with pytest.raises(ValueError, match="afa_candidates"):
        TopAFATrainingSAEConfig(d_in=8, d_sae=32, afa_candidates=0)


@pytest.mark.parametrize("rescale", [True, False])
def test_save_load_round_trip_selects_as_training(training_sae, tmp_path, rescale):
    training_sae.cfg.rescale_acts_by_decoder_norm = rescale
    training_sae.cfg.afa_coefficient = 0.0625
    x = torch.randn(256, 8) * 3
    training_sae.save_inference_model(tmp_path)
    loaded = SAE.load_from_disk(tmp_path)
    assert isinstance(loaded, TopAFASAE)
    assert loaded.cfg.afa_target == "input_minus_b_dec" and loaded.cfg.rescale_acts_by_decoder_norm == rescale
    with torch.no_grad():
        trained_acts = training_sae.encode(x)
        loaded_acts = loaded.encode(x)
        assert torch.equal(loaded_acts, trained_acts)  # the same latents per token, bit for bit
        assert torch.equal(loaded(x), training_sae(x))
    saved = json.loads((tmp_path / "cfg.json").read_text())
    assert saved["architecture"] == "topafa"
    assert saved["metadata"]["training_architecture_details"]["afa_coefficient"] == 0.0625


def _nmse(sae, activations: torch.Tensor) -> float:
    with torch.no_grad():
        reconstruction = sae(activations)
    return ((reconstruction - activations).square().sum(-1) / activations.square().sum(-1)).mean().item()


def test_runner_trains_topafa(tmp_path, tiny_model, byte_dataset):
    cfg = LanguageModelSAERunnerConfig.from_dict(tiny_runner_config_dict(tmp_path, "topafa", afa_coefficient=0.0625))
    sae = LanguageModelSAETrainingRunner(cfg, override_model=tiny_model, override_dataset=byte_dataset).run()
    assert isinstance(sae, TopAFATrainingSAE)
    loaded = SAE.load_from_disk(tmp_path / "output")
    assert isinstance(loaded, TopAFASAE) and loaded.cfg.d_sae == 64
    _, cache = tiny_model.run_with_cache(torch.as_tensor(byte_dataset[:4]["input_ids"]), names_filter=cfg.hook_name)
    activations = cache[cfg.hook_name].reshape(-1, 16)

    # Training helped: untrained top-AFA SAEs (seeds 0-2) leave NMSE 0.96-0.97 on these tokens; 32 steps of
    # the runner bring it to 0.52 (measured). Asserted: below 0.7 x the best untrained one.
    untrained = []
    for seed in range(3):
        torch.manual_seed(seed)
        untrained.append(_nmse(TopAFATrainingSAE(TopAFATrainingSAEConfig(d_in=16, d_sae=64)), activations))
    assert min(untrained) > 0.9
    assert _nmse(loaded, activations) < 0.7 * min(untrained)

    # The saved SAE keeps, per token, exactly the latents of the reference rule (full sort) on its own scores
    # s_i = ReLU(W_enc (x - b_dec) + b_enc)_i ||W_dec,i|| and target ||x - b_dec||, and decodes as the trained one.
    assert loaded.cfg.rescale_acts_by_decoder_norm and loaded.cfg.afa_target == "input_minus_b_dec"
    with torch.no_grad():
        feature_acts = loaded.encode(activations)
        centred = activations - loaded.b_dec
        scores = ((centred @ loaded.W_enc + loaded.b_enc) * loaded.W_dec.norm(dim=-1)).relu()
        reference = full_sort_afa_selection(scores, centred.norm(dim=-1))
        torch.testing.assert_close(feature_acts, scores * reference.mask)
        torch.testing.assert_close(loaded(activations), sae(activations))
    k = reference.k.float()
    assert k.std() > 0 and k.max() < 64  # k is chosen per token, never the full dictionary

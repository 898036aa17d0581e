"""Γ mechanism shared by the weighted architectures: loss, gradients, validation, registration."""

from __future__ import annotations

import importlib

import pytest
import torch
from sae_lens import SAE, TopKTrainingSAE, TopKTrainingSAEConfig, TrainingSAE
from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY
from sae_lens.saes.sae import TrainStepInput

import wsae_lens
from wsae_lens import (
    WeightedBatchTopKTrainingSAE,
    WeightedBatchTopKTrainingSAEConfig,
    WeightedStandardTrainingSAE,
    WeightedStandardTrainingSAEConfig,
    WeightedTopKTrainingSAE,
    WeightedTopKTrainingSAEConfig,
    save_gamma,
)
from wsae_lens.registration import ARCHITECTURES

D_IN, D_SAE = 12, 48

TRAINING = {
    "weighted_topk": (WeightedTopKTrainingSAE, WeightedTopKTrainingSAEConfig, {"k": 5}),
    "weighted_standard": (WeightedStandardTrainingSAE, WeightedStandardTrainingSAEConfig, {}),
    "weighted_batchtopk": (WeightedBatchTopKTrainingSAE, WeightedBatchTopKTrainingSAEConfig, {"k": 5}),
}


def make_sae(architecture: str, **fields):
    cls, cfg_cls, defaults = TRAINING[architecture]
    return cls(cfg_cls(d_in=D_IN, d_sae=D_SAE, **{**defaults, **fields}))


def step_input(x: torch.Tensor, dead: torch.Tensor | None = None) -> TrainStepInput:
    return TrainStepInput(
        sae_in=x, coefficients={"l1": 0.5}, dead_neuron_mask=dead, n_training_steps=0, is_logging_step=False
    )


def test_registration_is_idempotent():
    before = {name: SAE_CLASS_REGISTRY[name] for name in ARCHITECTURES}
    wsae_lens.register_architectures()
    importlib.reload(importlib.import_module("wsae_lens.registration")).register_architectures()
    importlib.import_module("wsae_lens")
    for name in ARCHITECTURES:
        assert name in SAE_CLASS_REGISTRY and name in SAE_TRAINING_CLASS_REGISTRY
    # another module registered a name first: wsae_lens leaves it alone and does not raise
    del SAE_CLASS_REGISTRY["weighted_standard"]
    SAE_CLASS_REGISTRY["weighted_standard"] = before["weighted_topk"]
    try:
        wsae_lens.register_architectures()
        assert SAE_CLASS_REGISTRY["weighted_standard"] == before["weighted_topk"]
    finally:
        SAE_CLASS_REGISTRY["weighted_standard"] = before["weighted_standard"]


def test_uniform_gamma_matches_saelens_topk_loss_and_gradients():
    weighted = make_sae("weighted_topk")
    plain = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5))
    plain.load_state_dict({k: v for k, v in weighted.state_dict().items() if k != "gamma"})
    x = torch.randn(64, D_IN)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[:10] = True  # exercise the AuxK loss too
    out_w = weighted.training_forward_pass(step_input(x, dead))
    out_p = plain.training_forward_pass(step_input(x, dead))
    assert torch.equal(out_w.loss, out_p.loss)
    for name in out_p.losses:
        assert torch.equal(out_w.losses[name], out_p.losses[name])
    out_w.loss.backward()
    out_p.loss.backward()
    grads_p = dict(plain.named_parameters())
    for name, param in weighted.named_parameters():
        assert torch.equal(param.grad, grads_p[name].grad), name


@pytest.mark.parametrize("architecture", sorted(TRAINING))
def test_weighted_loss_equals_formula(architecture):
    sae = make_sae(architecture)
    gamma = torch.rand(D_IN) + 0.1
    sae.set_gamma(gamma)
    x = torch.randn(32, D_IN)
    out = sae.training_forward_pass(step_input(x))
    expected = (gamma**2 * (x - out.sae_out) ** 2).sum(-1).mean()
    torch.testing.assert_close(out.losses["mse_loss"], expected)
    unweighted = out.metrics["unweighted_mse_loss"]()
    torch.testing.assert_close(unweighted, ((x - out.sae_out) ** 2).sum(-1).mean())
    assert not torch.allclose(unweighted, expected)


def assert_gradients_are_those_of_the_weighted_loss(weighted, gamma: torch.Tensor) -> None:
    """Backward through ``weighted`` and through SAELens's TopK (same weights) with its MSE replaced by
    mean Σ_i γ_i² (x_i − x̂_i)², written out here: every parameter gets the same gradient; Γ gets none."""
    plain = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5))
    plain.load_state_dict({k: v for k, v in weighted.state_dict().items() if k != "gamma"})
    x = torch.randn(64, D_IN)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[:10] = True  # the AuxK loss contributes too
    weighted.training_forward_pass(step_input(x, dead)).loss.backward()
    out = plain.training_forward_pass(step_input(x, dead))
    assert set(out.losses) == {"mse_loss", "auxiliary_reconstruction_loss"}
    reference = (gamma**2 * (x - out.sae_out) ** 2).sum(-1).mean() + out.losses["auxiliary_reconstruction_loss"]
    reference.backward()
    plain_params = dict(plain.named_parameters())
    for name, param in weighted.named_parameters():
        torch.testing.assert_close(param.grad, plain_params[name].grad, msg=name)
    assert not weighted.gamma.requires_grad and weighted.gamma.grad is None  # the backward pass left Γ alone


def test_gradients_are_those_of_the_gamma_weighted_loss_and_gamma_gets_none():
    weighted = make_sae("weighted_topk")
    gamma = torch.rand(D_IN) + 0.5
    weighted.set_gamma(gamma)
    assert "gamma" not in dict(weighted.named_parameters()) and "gamma" in weighted.state_dict()
    optimizer = torch.optim.Adam(weighted.parameters(), lr=1e-2)
    assert_gradients_are_those_of_the_weighted_loss(weighted, gamma)
    before = {name: param.detach().clone() for name, param in weighted.named_parameters()}
    optimizer.step()
    assert torch.equal(weighted.gamma, gamma)
    assert all(not torch.equal(param, before[name]) for name, param in weighted.named_parameters())


def test_a_loss_without_gamma_is_rejected(monkeypatch):
    """A weighted SAE whose loss forgot Γ: the gradient check above fails on it."""
    monkeypatch.setattr(WeightedTopKTrainingSAE, "weighted_mse", lambda self, preds, target: (preds - target).pow(2))
    weighted = make_sae("weighted_topk")
    gamma = torch.rand(D_IN) + 0.5
    weighted.set_gamma(gamma)
    with pytest.raises(AssertionError, match="W_dec|b_dec|W_enc|b_enc"):  # a parameter's gradient differs
        assert_gradients_are_those_of_the_weighted_loss(weighted, gamma)


def test_set_gamma_follows_sae_dtype_and_records_provenance(tmp_path):
    sae = make_sae("weighted_topk", dtype="float64")
    sae.set_gamma(torch.rand(D_IN, dtype=torch.float32) + 0.5, weighting="uniform", alpha=0.5, tokens=1000)
    assert sae.gamma.dtype == torch.float64
    assert sae.cfg.weighting_alpha == 0.5 and sae.cfg.weighting_tokens == 1000
    path = save_gamma(torch.arange(1.0, D_IN + 1.0), tmp_path / "gamma.safetensors")
    sae.set_gamma(path)
    assert torch.equal(sae.gamma, torch.arange(1.0, D_IN + 1.0, dtype=torch.float64))


def test_weighting_file_reads_gamma_at_construction(tmp_path):
    gamma = torch.linspace(0.5, 2.0, D_IN)
    path = save_gamma(gamma, tmp_path / "gamma.safetensors")
    sae = make_sae("weighted_topk", weighting="file", weighting_path=str(path))
    assert torch.equal(sae.gamma, gamma)


@pytest.mark.parametrize(
    ("gamma", "message"),
    [
        (torch.ones(D_IN + 1), "d_in"),
        (torch.tensor([float("nan")] + [1.0] * (D_IN - 1)), "NaN/Inf"),
        (torch.tensor([float("inf")] + [1.0] * (D_IN - 1)), "NaN/Inf"),
        (torch.tensor([-1.0] + [1.0] * (D_IN - 1)), "negative"),
        (torch.zeros(D_IN), "all zero"),
    ],
)
def test_bad_gamma_is_rejected_and_leaves_gamma_unchanged(gamma, message):
    sae = make_sae("weighted_topk")
    before = sae.gamma.clone()
    with pytest.raises(ValueError, match=message):
        sae.set_gamma(gamma)
    assert torch.equal(sae.gamma, before)


def test_bad_config_fields_are_named():
    with pytest.raises(ValueError, match="weighting_alpha"):
        make_sae("weighted_topk", weighting_alpha=-0.5)
    with pytest.raises(ValueError, match="weighting="):
        make_sae("weighted_topk", weighting="bogus")
    with pytest.raises(ValueError, match="weighting_path"):
        make_sae("weighted_topk", weighting="file")
    with pytest.raises(FileNotFoundError, match="weighting_path"):
        make_sae("weighted_topk", weighting="file", weighting_path="/nonexistent/gamma.safetensors")
    with pytest.raises(ValueError, match="weighting_alpha"):
        make_sae("weighted_topk").set_gamma(torch.ones(D_IN), alpha=-1.0)


def test_covariance_whitening_rejects_non_uniform_gamma(tmp_path):
    path = save_gamma(torch.linspace(0.5, 2.0, D_IN), tmp_path / "gamma.safetensors")
    with pytest.raises(ValueError, match="covariance_whitening"):
        make_sae(
            "weighted_topk", normalize_activations="covariance_whitening", weighting="file", weighting_path=str(path)
        )
    sae = make_sae("weighted_topk", normalize_activations="covariance_whitening")
    sae.set_gamma(torch.full((D_IN,), 2.0))  # uniform Γ is fine: it only rescales the loss
    with pytest.raises(ValueError, match="covariance_whitening"):
        sae.set_gamma(torch.linspace(0.5, 2.0, D_IN))


@pytest.mark.parametrize("architecture", sorted(TRAINING))
def test_save_load_roundtrip_is_bit_exact(architecture, tmp_path):
    sae = make_sae(architecture)
    sae.set_gamma(torch.rand(D_IN) + 0.1, alpha=0.5, tokens=123)
    with torch.no_grad():  # move off the init so folding is exercised
        sae.W_dec.mul_(torch.rand(D_SAE, 1) + 0.5)
        if architecture == "weighted_batchtopk":
            sae.topk_threshold.fill_(0.05)
    x = torch.randn(20, D_IN)
    sae.save_inference_model(tmp_path / "inference")
    loaded = SAE.load_from_disk(tmp_path / "inference")
    assert loaded.cfg.architecture() == architecture
    assert torch.equal(loaded.gamma, sae.gamma)
    assert loaded.cfg.weighting_alpha == 0.5 and loaded.cfg.weighting_tokens == 123
    again_dir = tmp_path / "again"
    loaded.save_model(again_dir)
    again = SAE.load_from_disk(again_dir)
    feats = loaded.encode(x)
    assert torch.equal(again.encode(x), feats)
    assert torch.equal(again.decode(feats), loaded.decode(feats))
    if architecture != "weighted_batchtopk":  # BatchTopK saves as JumpReLU: a different inference rule
        torch.testing.assert_close(loaded(x), sae(x), rtol=1e-5, atol=1e-5)
    # training checkpoints load back into the training class, bit-exact
    sae.save_model(tmp_path / "checkpoint")
    restored = TrainingSAE.load_from_disk(tmp_path / "checkpoint")
    assert type(restored) is type(sae)
    assert torch.equal(restored.encode(x), sae.encode(x))
    assert torch.equal(restored.decode(sae.encode(x)), sae.decode(sae.encode(x)))

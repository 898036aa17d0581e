"""The weighting option fields of the weighted configs: one validation, explicit negative α, cfg.json round trip."""

from __future__ import annotations

import json

import pytest
import torch
from sae_lens import SAE

import wsae_lens  # noqa: F401  (registers the architectures)
from wsae_lens import WeightedTopKTrainingSAE, WeightedTopKTrainingSAEConfig

D_IN, D_SAE = 8, 16


def make_cfg(**fields) -> WeightedTopKTrainingSAEConfig:
    return WeightedTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=2, **fields)


def test_defaults_keep_the_previous_behaviour():
    cfg = make_cfg()
    assert cfg.weighting_transform == "none"
    assert cfg.weighting_active_quantile is None
    assert cfg.weighting_allow_negative_alpha is False


def test_negative_alpha_is_refused_with_the_field_and_the_fix():
    with pytest.raises(ValueError, match=r"weighting_alpha.*weighting_allow_negative_alpha=True.*got -1\.0"):
        make_cfg(weighting="variance", weighting_alpha=-1.0)
    assert make_cfg(weighting="variance", weighting_alpha=-1.0, weighting_allow_negative_alpha=True).weighting_alpha == -1.0


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_alpha_is_refused_even_when_negative_is_allowed(alpha):
    with pytest.raises(ValueError, match="weighting_alpha: alpha must be >= 0 and finite"):
        make_cfg(weighting_alpha=alpha, weighting_allow_negative_alpha=True)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"weighting_transform": "softmax"}, "weighting_transform='softmax'"),
        ({"weighting_active_quantile": 1.0}, "weighting_active_quantile=1.0"),
        ({"weighting_active_quantile": -0.1}, "weighting_active_quantile=-0.1"),
    ],
)
def test_bad_option_fields_are_named(fields, match):
    with pytest.raises(ValueError, match=match):
        make_cfg(**fields)


def test_set_gamma_follows_the_config_opt_in():
    sae = WeightedTopKTrainingSAE(make_cfg())
    before = sae.gamma.clone()
    with pytest.raises(ValueError, match="weighting_allow_negative_alpha"):
        sae.set_gamma(torch.rand(D_IN) + 0.5, alpha=-1.0)
    assert torch.equal(sae.gamma, before) and sae.cfg.weighting_alpha == 1.0
    opted_in = WeightedTopKTrainingSAE(make_cfg(weighting_allow_negative_alpha=True))
    opted_in.set_gamma(torch.rand(D_IN) + 0.5, alpha=-1.0)
    assert opted_in.cfg.weighting_alpha == -1.0


def test_options_survive_save_and_load(tmp_path):
    fields = {
        "weighting": "variance",
        "weighting_alpha": -1.0,
        "weighting_allow_negative_alpha": True,
        "weighting_transform": "rank",
        "weighting_active_quantile": 0.99,
    }
    sae = WeightedTopKTrainingSAE(make_cfg(**fields))
    gamma = torch.linspace(2.0, 0.5, D_IN)
    sae.set_gamma(gamma, alpha=-1.0, tokens=321)
    sae.save_inference_model(tmp_path / "inference")
    saved = json.loads((tmp_path / "inference" / "cfg.json").read_text())
    assert {k: saved[k] for k in fields} == fields
    loaded = SAE.load_from_disk(tmp_path / "inference")
    assert loaded.cfg.architecture() == "weighted_topk"
    assert {k: getattr(loaded.cfg, k) for k in fields} == fields
    assert loaded.cfg.weighting_tokens == 321
    assert torch.equal(loaded.gamma, sae.gamma)


def test_a_saved_negative_alpha_without_the_opt_in_does_not_load(tmp_path):
    """A hand-edited cfg.json with α < 0 and no opt-in is refused at load time, by the same check."""
    sae = WeightedTopKTrainingSAE(make_cfg(weighting_alpha=-0.5, weighting_allow_negative_alpha=True))
    sae.save_inference_model(tmp_path / "inference")
    path = tmp_path / "inference" / "cfg.json"
    cfg = json.loads(path.read_text())
    cfg["weighting_allow_negative_alpha"] = False
    path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="weighting_allow_negative_alpha"):
        SAE.load_from_disk(tmp_path / "inference")

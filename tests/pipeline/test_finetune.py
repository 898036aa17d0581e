"""Fine-tuning: a saved plain topk SAE converts to weighted_topk with identical encode/decode, then trains."""

from __future__ import annotations

import pytest
import torch
from sae_lens import SAE, LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner
from sae_lens.saes.sae import TrainStepInput

from tests.conftest import tiny_runner_config_dict
from wsae_lens import WeightedTopKTrainingSAE
from wsae_lens.pipeline.finetune import finetune_sae, load_pretrained_sae, to_weighted_topk


@pytest.fixture(scope="module")
def saved_topk(tiny_model, byte_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("topk")
    cfg = LanguageModelSAERunnerConfig.from_dict(tiny_runner_config_dict(tmp, "topk"))
    LanguageModelSAETrainingRunner(cfg, override_dataset=byte_dataset, override_model=tiny_model).run()
    return tmp / "output"


def _acts(tiny_model, byte_dataset, n_rows: int = 8) -> torch.Tensor:
    tokens = byte_dataset[:n_rows]["input_ids"]
    tokens = torch.as_tensor(tokens)
    _, cache = tiny_model.run_with_cache(tokens, names_filter=["blocks.0.hook_resid_post"])
    return cache["blocks.0.hook_resid_post"].reshape(-1, 16)


def test_conversion_keeps_encode_and_decode(saved_topk, tiny_model, byte_dataset) -> None:
    plain = load_pretrained_sae(saved_topk)
    weighted = to_weighted_topk(plain, weighting="uniform")
    assert isinstance(weighted, WeightedTopKTrainingSAE) and weighted.cfg.k == plain.cfg.k
    x = _acts(tiny_model, byte_dataset)
    with torch.no_grad():
        assert torch.allclose(weighted.encode(x), plain.encode(x), atol=1e-6)
        assert torch.allclose(weighted.decode(plain.encode(x)), plain.decode(plain.encode(x)), atol=1e-6)
        assert torch.allclose(weighted(x), plain(x), atol=1e-5)


def _losses(sae: WeightedTopKTrainingSAE, x: torch.Tensor, gamma: torch.Tensor) -> tuple[float, float]:
    """(Γ-weighted MSE with the given Γ, unweighted MSE) of ``sae`` on ``x``."""
    with torch.no_grad():
        x_hat = sae.decode(sae.encode(x))
        return float(((x_hat - x) * gamma).pow(2).sum(-1).mean()), float((x_hat - x).pow(2).sum(-1).mean())


def test_finetuning_starts_from_the_pretrained_sae_and_trains_the_weighted_loss(
    saved_topk, tiny_model, byte_dataset, tmp_path
) -> None:
    """Fine-tune the same TopK SAE twice on the same data, with Γ = Var and with Γ = 1: the Γ run must end
    lower on the Γ-weighted loss and the uniform run lower on the plain MSE (a loss that ignored Γ would
    make the two runs identical), and both must stay near the pretrained decoder (not train from scratch)."""
    x = _acts(tiny_model, byte_dataset, n_rows=64)
    pretrained = load_pretrained_sae(saved_topk)

    def finetune(weighting: str, out: str):
        overrides = tiny_runner_config_dict(tmp_path / out)
        overrides.pop("sae")
        overrides.update(training_tokens=8192, lr=3e-3)
        torch.manual_seed(0)
        return finetune_sae(saved_topk, overrides, weighting=weighting, alpha=1.0, model=tiny_model, dataset=byte_dataset)

    weighted, uniform = finetune("variance", "weighted"), finetune("uniform", "uniform")
    gamma = weighted.gamma
    assert weighted.cfg.weighting == "variance" and weighted.cfg.weighting_tokens > 0 and gamma.std() > 0.1
    weighted_loss, weighted_mse = _losses(weighted, x, gamma)
    uniform_loss, uniform_mse = _losses(uniform, x, gamma)
    assert weighted_loss < 0.97 * uniform_loss and uniform_mse < 0.97 * weighted_mse
    for tuned in (weighted, uniform):
        cosine = torch.nn.functional.cosine_similarity(tuned.W_dec, pretrained.W_dec, dim=1)
        assert cosine.median() > 0.9  # continued from the pretrained decoder (a fresh one gives ≈ 0)
    reloaded = SAE.load_from_disk(tmp_path / "weighted" / "output")
    assert reloaded.cfg.architecture() == "weighted_topk" and torch.equal(reloaded.gamma, gamma)


def test_only_topk_converts(tiny_model) -> None:
    from sae_lens import StandardSAE, StandardSAEConfig

    with pytest.raises(ValueError, match="Only TopK"):
        to_weighted_topk(StandardSAE(StandardSAEConfig(d_in=16, d_sae=32)))

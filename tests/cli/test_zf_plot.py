"""``wsae-lens zf-plot`` on a saved top-AFA SAE and activation files."""

from __future__ import annotations

import json

import pytest
import torch
from sae_lens import SAE
from safetensors.torch import save_file
from typer.testing import CliRunner

from wsae_lens import TopAFATrainingSAE, TopAFATrainingSAEConfig
from wsae_lens.cli import app
from wsae_lens.diagnostics.afa import afa_diagnostics


def afa_by_definition(sae, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-token ‖f̃‖/‖z‖, L0, ε_LBO and NMSE from the SAE's encode/decode alone (arXiv 2503.24277).

    f̃ holds, for every active latent, the norm of the vector it adds to the reconstruction,
    ‖decode(a_i e_i) − decode(0)‖, plus ‖b_dec‖; z is the input (no activation normalisation here).
    """
    with torch.no_grad():
        acts = sae.encode(tokens)
        base = sae.decode(torch.zeros(1, acts.shape[1]))
        one_hot = torch.diag_embed(acts)  # [tokens, d_sae, d_sae]: each active latent on its own
        contributions = (sae.decode(one_hot.reshape(-1, acts.shape[1])) - base).norm(dim=-1).reshape(acts.shape)
        f_tilde = torch.cat([contributions, sae.b_dec.norm().expand(len(tokens), 1)], dim=-1)
        h = (f_tilde != 0).sum(-1)
        feature_sq, dense_sq = f_tilde.square().sum(-1), tokens.square().sum(-1)
        return {
            "ratio": (feature_sq / dense_sq).sqrt(),
            "l0": (acts != 0).sum(-1).float(),
            "eps_lbo": (dense_sq - feature_sq).abs() / ((h - 1) * feature_sq),
            "nmse": (tokens - sae(tokens)).square().sum(-1) / dense_sq,
        }


def test_zf_plot_command_summary_matches_the_definitions_and_the_library(tmp_path):
    torch.manual_seed(0)
    sae = TopAFATrainingSAE(TopAFATrainingSAEConfig(d_in=16, d_sae=64))
    with torch.no_grad():  # a decoder bias and uneven decoder norms, so f̃'s bias entry and scaling matter
        sae.b_dec.copy_(torch.randn(16) * 0.5)
        sae.W_dec.mul_(torch.rand(64, 1) + 0.5)
    sae.save_inference_model(tmp_path / "sae")
    # token norms spread over a factor 5: ‖b_dec‖ over-activates the small tokens, the weak encoder
    # under-activates the big ones
    activations = torch.randn(4, 50, 16) * (torch.rand(4, 50, 1) * 0.8 + 0.2)
    save_file({"acts": activations}, tmp_path / "acts.safetensors")
    torch.save(activations, tmp_path / "acts.pt")
    tokens = activations.reshape(-1, 16)[:150]  # --max-tokens 150: the first 150 tokens in order
    loaded = SAE.load_from_disk(tmp_path / "sae")
    expected = afa_by_definition(loaded, tokens)
    ratio = expected["ratio"].double()
    library = afa_diagnostics(loaded, tokens, progress=False).summary().to_dict()
    runner = CliRunner()
    for source in ("acts.safetensors", "acts.pt"):
        plot = tmp_path / f"zf_{source}.png"
        result = runner.invoke(
            app,
            ["zf-plot", str(tmp_path / "sae"), str(tmp_path / source), "-o", str(plot), "--max-tokens", "150",
             "--batch-size", "64", "--json", str(tmp_path / "summary.json")],
        )
        assert result.exit_code == 0, result.output
        assert plot.stat().st_size > 1000
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary["n_tokens"] == 150
        # the same activations through the library give the same numbers (JSON keys are strings)
        for key, value in library.items():
            if isinstance(value, dict):
                assert summary[key] == pytest.approx({str(q): v for q, v in value.items()}, rel=1e-6), key
            elif key != "quantiles":
                assert summary[key] == pytest.approx(value, rel=1e-6), key
        # and the definitions, computed here from encode/decode
        assert summary["share_under_activated"] == pytest.approx((ratio < 1).double().mean().item())
        assert summary["share_over_activated"] == pytest.approx((ratio > 1).double().mean().item())
        assert summary["median_ratio"] == pytest.approx(ratio.sort().values[(len(ratio) - 1) // 2].item(), rel=1e-5)
        assert summary["ratio_quantiles"]["0.25"] == pytest.approx(torch.quantile(ratio, 0.25).item(), rel=1e-5)
        assert summary["mean_l0"] == pytest.approx(expected["l0"].mean().item())
        assert summary["mean_nmse"] == pytest.approx(expected["nmse"].double().mean().item(), rel=1e-5)
        assert summary["median_eps_lbo"] == pytest.approx(expected["eps_lbo"].double().nanmedian().item(), rel=1e-4)
        assert f"under-activated {summary['share_under_activated']:.1%}" in result.output
    # the data exercise both sides of y = x, unevenly (measured 57% / 43%: swapping over/under is caught)
    shares = (summary["share_under_activated"], summary["share_over_activated"])
    assert 0 < min(shares) and max(shares) < 1 and abs(shares[0] - shares[1]) > 0.1


def test_zf_plot_command_rejects_bad_inputs(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["zf-plot", str(tmp_path), str(tmp_path / "missing.pt")])
    assert result.exit_code != 0 and "cfg.json" in result.output
    sae = TopAFATrainingSAE(TopAFATrainingSAEConfig(d_in=16, d_sae=64))
    sae.save_inference_model(tmp_path / "sae")
    save_file({"a": torch.randn(5, 16), "b": torch.randn(5, 16)}, tmp_path / "two.safetensors")
    result = runner.invoke(app, ["zf-plot", str(tmp_path / "sae"), str(tmp_path / "two.safetensors")])
    assert result.exit_code != 0 and "--key" in result.output
    save_file({"a": torch.randn(5, 8)}, tmp_path / "narrow.safetensors")
    result = runner.invoke(app, ["zf-plot", str(tmp_path / "sae"), str(tmp_path / "narrow.safetensors")])
    assert result.exit_code != 0 and "d_in" in result.output

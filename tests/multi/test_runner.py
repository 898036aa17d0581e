"""Many SAEs from one forward pass: each equals the SAE trained alone; Γ and b_dec equal the single runner's."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from sae_lens import SAE, LanguageModelSAERunnerConfig

from tests.conftest import tiny_runner_config_dict
from tests.multi.helpers import (
    RESID_POST,
    by_sae,
    max_relative_error,
    multi_config_dict,
    record_trainer_inputs,
    train_alone,
)
from wsae_lens import TokenFilter, WeightedSAETrainingRunner
from wsae_lens.multi import WeightedMultiSAETrainingRunner, build_saes, multi_config_from_dict
from wsae_lens.multi.prepare import prepare_multi_training
from wsae_lens.training import prepare_training


def multi_runner(tmp_path, tiny_model, byte_dataset, **fields) -> WeightedMultiSAETrainingRunner:
    cfg = multi_config_from_dict(multi_config_dict(tmp_path, **fields))
    return WeightedMultiSAETrainingRunner(cfg, override_model=tiny_model, override_dataset=byte_dataset)


def test_every_sae_equals_the_sae_trained_alone_on_its_batches(tmp_path, tiny_model, byte_dataset, monkeypatch):
    records = record_trainer_inputs(monkeypatch)
    runner = multi_runner(tmp_path, tiny_model, byte_dataset.select(range(96)))  # short b_dec/Γ pass
    saes = runner.run()
    assert sorted(saes) == sorted(runner.cfg.saes)
    trainer_cfg = replace(runner.cfg.to_sae_trainer_config(), n_checkpoints=0, checkpoint_path=None)
    steps = runner.cfg.training_tokens // runner.cfg.train_batch_size_tokens
    for name, record in by_sae(records, saes).items():
        assert len(record["batches"]) == steps
        assert all(batch.shape == (128, 16) for batch in record["batches"])
        alone = train_alone(runner.cfg.saes[name], record["initial"], record["batches"], trainer_cfg)
        assert max_relative_error(saes[name].state_dict(), alone.state_dict()) <= 1e-6, name
        assert max_relative_error(saes[name].state_dict(), record["initial"]) > 1e-3, name  # it did train
    # SAEs on one hook saw the same rows; saved as a single SAELens run saves one, with its filter recorded
    assert torch.equal(by_sae(records, saes)["topk_var"]["batches"][3], by_sae(records, saes)["topafa"]["batches"][3])
    for name, sae in saes.items():
        loaded = SAE.load_from_disk(tmp_path / "output" / name)
        assert loaded.cfg.architecture() == sae.cfg.architecture()
        assert loaded.cfg.metadata.hook_name == runner.cfg.hook_names_per_sae[name]
        recorded = TokenFilter.recorded_in(loaded)
        assert recorded is not None and recorded.median_norm == runner.token_filters[loaded.cfg.metadata.hook_name].median_norm
    assert json.loads((tmp_path / "output" / "runner_cfg.json").read_text())["saes"].keys() == saes.keys()


def test_one_pass_gamma_and_b_dec_equal_the_single_runners(tmp_path, tiny_model, byte_dataset):
    """Γ of every weighted SAE (own weighting, α, budget, hook) and every b_dec equal what the single-SAE
    runner's prepare_training (estimate_sae_gamma on that hook) gives for that SAE alone."""
    dataset = byte_dataset.select(range(96))  # 3,072 tokens: every pass is short
    runner = multi_runner(tmp_path, tiny_model, dataset)
    prepare_multi_training(runner)
    spec = multi_config_dict(tmp_path)["saes"]
    for name in ("topk_var", "topk_sc", "batchtopk", "topafa"):
        sae = runner.saes[name]
        fields = {k: v for k, v in spec[name].items() if k != "hook_name"}
        single_dict = tiny_runner_config_dict(tmp_path / name, **fields)
        single_dict["hook_name"] = runner.cfg.hook_names_per_sae[name]
        single = WeightedSAETrainingRunner(LanguageModelSAERunnerConfig.from_dict(single_dict),
                                           override_model=tiny_model, override_dataset=dataset)
        prepare_training(single, progress=False)
        torch.testing.assert_close(sae.b_dec, single.sae.b_dec, rtol=1e-6, atol=1e-7)
        assert single.token_filter.median_norm == runner.token_filters[single_dict["hook_name"]].median_norm
        if hasattr(single.sae, "gamma_ready") and single.sae.cfg.weighting != "uniform":
            torch.testing.assert_close(sae.gamma, single.sae.gamma, rtol=1e-6, atol=0)
            assert sae.cfg.weighting_tokens == single.sae.cfg.weighting_tokens == spec[name]["weighting_tokens"]
            assert sae.gamma.max() / sae.gamma.min() > 1.05, name  # a real, non-uniform Γ


def test_sae_init_depends_only_on_seed_and_position(tmp_path):
    cfg = multi_config_from_dict(multi_config_dict(tmp_path))
    names = list(cfg.saes)
    every = build_saes(cfg, names)
    alone = build_saes(cfg, [names[2]])
    assert list(alone) == [names[2]]
    for key, value in alone[names[2]].state_dict().items():
        assert torch.equal(value, every[names[2]].state_dict()[key])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(trainig_tokens=1), "unknown field 'trainig_tokens'. Did you mean 'training_tokens'?"),
        (lambda d: d["saes"]["gba"].update(kk=3), "saes.gba (gba): unknown field 'kk'"),
        (lambda d: (d.pop("hook_name"), d["saes"]["topafa"].pop("hook_name", None)), "saes.topk_var.hook_name is missing"),
        (lambda d: d["saes"]["gba"].pop("architecture"), "saes.gba.architecture is missing"),
        (lambda d: d["saes"]["gba"].update(architecture="gbaa"), "saes.gba.architecture='gbaa' is not registered"),
        (lambda d: d.update(saes={}), "`saes:` must be a non-empty mapping"),
        (lambda d: d.update(sae={"architecture": "topk"}), "both `sae:` and `saes:`"),
        (lambda d: d["saes"].update({"a/b": {"architecture": "topk", "d_in": 16, "d_sae": 64}}), "saes.a/b: the name"),
    ],
)
def test_config_errors_name_the_field(tmp_path, change, message):
    data = multi_config_dict(tmp_path)
    change(data)
    with pytest.raises(ValueError) as caught:
        multi_config_from_dict(data)
    assert message in str(caught.value)


def test_gamma_is_restored_not_reestimated_on_resume(tmp_path, tiny_model, byte_dataset):
    saes = {"var": {"architecture": "weighted_topk", "k": 4, "weighting": "variance", "weighting_tokens": 512}}
    dataset = byte_dataset.select(range(96))
    first = multi_runner(tmp_path, tiny_model, dataset, saes=saes, n_checkpoints=1, training_tokens=1024)
    trained = first.run()["var"]
    checkpoint = next(p for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    saes["var"]["weighting_alpha"] = 0.25  # would give another Γ if estimated again
    resumed = multi_runner(tmp_path, tiny_model, dataset, saes=saes, resume_from_checkpoint=str(checkpoint), training_tokens=1024,
                           output_path=str(tmp_path / "resumed"))
    torch.testing.assert_close(resumed.run()["var"].gamma, trained.gamma)

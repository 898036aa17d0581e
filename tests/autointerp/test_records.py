"""Latent records on the tiny byte model: choice of latents, top/quantile/negative contexts, marks."""

from __future__ import annotations

import pytest
import torch
from sae_lens.training.activations_store import ActivationsStore

from wsae_lens.autointerp import (
    ActivationsStoreSource,
    AutoInterpConfig,
    build_latent_records,
    byte_token_strings,
    choose_latents,
    scan_source,
)
from wsae_lens.autointerp.prompts import format_example

CFG = AutoInterpConfig(
    n_latents=4, n_contexts=120, batch_size=32, n_explanation_examples=4, n_quantiles=3,
    n_examples_per_quantile=2, n_non_activating=3, window_left=6, window_right=2, seed=3,
)


@pytest.fixture(scope="module")
def scan(topk_sae, byte_source):
    return scan_source(topk_sae, byte_source, CFG)


def test_scan_matches_direct_encoding(topk_sae, byte_source, scan, byte_dataset):
    tokens = torch.tensor(byte_dataset["input_ids"][:5])
    direct = topk_sae.encode(byte_source.activations(tokens)).max(1).values
    assert scan.tokens.shape == (CFG.n_contexts, tokens.shape[1])
    torch.testing.assert_close(scan.context_max[:5], direct)
    assert int(scan.firing_counts.sum()) == CFG.n_contexts * tokens.shape[1] * 4  # TopK: k latents per token


def test_latents_are_live_seeded_and_distinct(scan):
    live = set(scan.live_latents.tolist())
    chosen = choose_latents(scan, 4, seed=3)
    assert len(set(chosen)) == 4 and set(chosen) <= live
    assert chosen == choose_latents(scan, 4, seed=3)
    assert {tuple(choose_latents(scan, 4, seed=s)) for s in range(6)} != {tuple(chosen)}
    assert sorted(choose_latents(scan, 10_000, seed=0)) == sorted(live)  # budget larger than live: all


def test_records_contexts(topk_sae, byte_source, scan):
    records = build_latent_records(topk_sae, byte_source, CFG, scan=scan)
    assert [r.latent for r in records] == choose_latents(scan, CFG.n_latents, CFG.seed)
    with torch.no_grad():  # every scanned token, encoded directly: which latents fire on it
        firing = topk_sae.encode(byte_source.activations(scan.tokens)).reshape(-1, topk_sae.cfg.d_sae) > 0
    for record in records:
        maxima = scan.context_max[:, record.latent]
        top = torch.argsort(maxima, descending=True, stable=True)[: CFG.n_explanation_examples].tolist()
        assert [e.context_index for e in record.explanation_examples] == top
        for example in record.explanation_examples:
            # the window holds the context's most-activating token, with its activation
            assert example.max_activation == pytest.approx(float(maxima[example.context_index]), rel=1e-5)
            assert len(example.tokens) == len(example.activations) <= CFG.window_left + CFG.window_right + 1
            assert "<<" in format_example(example)
        held_out = {e.context_index for e in record.activating_examples}
        assert not held_out & set(top)
        assert all(maxima[c] > 0 for c in held_out)
        assert {e.quantile for e in record.activating_examples} <= set(range(CFG.n_quantiles))
        assert len(record.activating_examples) <= CFG.n_quantiles * CFG.n_examples_per_quantile
        for example in record.non_activating_examples:
            assert maxima[example.context_index] == 0 and example.max_activation == 0
            assert "<<" not in format_example(example)
        assert record.n_activating_contexts == int((maxima > 0).sum())
        assert list(record.activation_quantiles.values()) == sorted(record.activation_quantiles.values())
        assert record.activation_quantiles["q1"] == pytest.approx(float(maxima.max()))
        assert record.firing_rate == pytest.approx(firing[:, record.latent].float().mean().item())
        assert 0 < record.firing_rate < 1


def test_explicit_latents_and_bad_latent(topk_sae, byte_source, scan):
    records = build_latent_records(topk_sae, byte_source, CFG, latents=[5, 7], scan=scan)
    assert [r.latent for r in records] == [5, 7]
    with pytest.raises(ValueError, match="out of range"):
        build_latent_records(topk_sae, byte_source, CFG, latents=[64], scan=scan)


def test_activations_store_source(topk_sae, tiny_model, byte_dataset):
    store = ActivationsStore(
        model=tiny_model, dataset=byte_dataset, streaming=False, hook_name="blocks.0.hook_resid_post",
        hook_head_index=None, context_size=32, d_in=16, n_batches_in_buffer=2, total_training_tokens=10**6,
        store_batch_size_prompts=8, train_batch_size_tokens=64, prepend_bos=False, normalize_activations="none",
        device=torch.device("cpu"), dtype="float32",
    )
    source = ActivationsStoreSource(store, token_strings=byte_token_strings)
    cfg = AutoInterpConfig(n_latents=2, n_contexts=40, batch_size=16, n_explanation_examples=3, seed=0)
    records = build_latent_records(topk_sae, source, cfg)
    assert len(records) == 2 and all(r.explanation_examples for r in records)
    with pytest.raises(ValueError, match="token_strings"):
        ActivationsStoreSource(store)  # the tiny model has no tokenizer


def test_config_errors():
    with pytest.raises(ValueError, match="n_latents"):
        AutoInterpConfig(n_latents=0)
    with pytest.raises(ValueError, match="at least one scorer"):
        AutoInterpConfig(detection=False, fuzzing=False)
    with pytest.raises(ValueError, match="unknown fields"):
        AutoInterpConfig.from_dict({"n_latent": 3})


def test_excluded_tokens_never_fire(topk_sae, tiny_model, byte_dataset):
    from wsae_lens.autointerp import ModelActivationSource

    excluded = [ord(" "), ord("e"), ord("\n")]
    source = ModelActivationSource(
        tiny_model, byte_dataset, "blocks.0.hook_resid_post", token_strings=byte_token_strings,
        excluded_token_ids=excluded,
    )
    records = build_latent_records(topk_sae, source, CFG)
    shown = 0
    for record in records:
        for example in record.explanation_examples + record.activating_examples:
            for token, activation in zip(example.tokens, example.activations):
                if ord(token) in excluded:
                    shown += 1
                    assert activation == 0
    assert shown > 0  # the excluded tokens do appear in the windows, silenced

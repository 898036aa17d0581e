"""The source adapter: tensors, (activations, labels) pairs, a real ActivationsStore, a real cached directory."""

from __future__ import annotations

import datasets
import pytest
import torch
from sae_lens import LanguageModelSAERunnerConfig
from sae_lens.training.activations_store import ActivationsStore

from tests.conftest import CACHED_TRAINING_TOKENS, CONTEXT_SIZE, tiny_runner_config_dict
from wsae_lens.activations import iter_activation_batches
from wsae_lens.estimators import estimate_variance


def test_tensor_and_pairs():
    x = torch.randn(2, 5, 3)
    (batch,) = iter_activation_batches(x)
    assert batch.activations.shape == (10, 3) and batch.labels is None
    batches = list(iter_activation_batches([(x[0], torch.arange(5)), x[1]]))
    assert torch.equal(batches[0].labels, torch.arange(5)) and batches[1].labels is None
    with pytest.raises(TypeError, match="cannot read activations from a int"):
        list(iter_activation_batches(3))
    with pytest.raises(TypeError, match="batch 1 is a str"):
        list(iter_activation_batches([x[0], "oops"]))


def test_cached_directory_gives_every_token_with_its_id(cached_activations_dir):
    batches = list(iter_activation_batches(cached_activations_dir, tokens_per_batch=300))
    activations = torch.cat([b.activations for b in batches])
    labels = torch.cat([b.labels for b in batches])
    dataset = datasets.load_from_disk(str(cached_activations_dir)).with_format("torch")
    assert activations.shape == (CACHED_TRAINING_TOKENS, 16)
    torch.testing.assert_close(activations, dataset[:]["blocks.0.hook_resid_post"].reshape(-1, 16))
    assert torch.equal(labels, dataset[:]["token_ids"].reshape(-1).long())
    assert len(batches) == CACHED_TRAINING_TOKENS // (300 // CONTEXT_SIZE * CONTEXT_SIZE) + 1
    with pytest.raises(ValueError, match="no column 'nope'"):
        list(iter_activation_batches(cached_activations_dir, hook_name="nope"))
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        list(iter_activation_batches(cached_activations_dir / "missing"))


def test_activations_store_matches_its_cached_twin(tmp_path, tiny_model, byte_dataset, cached_activations_dir):
    """The tiny model's store and the cache CacheActivationsRunner wrote give the same variance."""
    cfg = LanguageModelSAERunnerConfig.from_dict(tiny_runner_config_dict(tmp_path))
    store = ActivationsStore.from_config(tiny_model, cfg, override_dataset=byte_dataset)
    from_store = estimate_variance(store, max_tokens=CACHED_TRAINING_TOKENS, progress=False)
    from_cache = estimate_variance(cached_activations_dir, progress=False)
    torch.testing.assert_close(from_store, from_cache, rtol=1e-5, atol=0)
    batch = next(iter_activation_batches(store, max_tokens=10))
    assert batch.labels is not None and batch.labels.shape == (10,)
    with pytest.raises(ValueError, match="max_tokens is required"):
        list(iter_activation_batches(store))


def test_store_over_cached_activations(tmp_path, tiny_model, byte_dataset, cached_activations_dir):
    cfg = LanguageModelSAERunnerConfig.from_dict(
        {**tiny_runner_config_dict(tmp_path), "use_cached_activations": True, "cached_activations_path": str(cached_activations_dir)}
    )
    store = ActivationsStore.from_config(tiny_model, cfg, override_dataset=byte_dataset)  # dataset unused: cached
    tokens = sum(b.activations.shape[0] for b in iter_activation_batches(store, max_tokens=10**9))
    assert tokens == CACHED_TRAINING_TOKENS  # one pass, then stop

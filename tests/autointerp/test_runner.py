"""End to end: records → explanation → scores with the real embedded SmolLM2, locally and over HTTP.

LLM work is kept tiny (two latents, a few contexts, a few generated tokens): the 135M model is slow on
CPU and its answers are weak, so these tests check the pipeline's behaviour (every context judged or
counted, results on disk, failures counted, resume), not the quality of the explanations. The scores
themselves are checked exactly with a scripted client whose answers are known (all correct, all wrong,
always yes, unparsable, failed), and the no-LLM proxy against its definition.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

from tests.autointerp.conftest import tiny_llm_config
from wsae_lens.autointerp import (
    LLMError,
    OpenAICompatibleClient,
    OpenAICompatibleServer,
    build_latent_records,
    comparison_table,
    run_autointerp,
    scan_source,
)
from wsae_lens.autointerp.prompts import DETECTION_INTRO, explainer_messages, format_example, format_text
from wsae_lens.autointerp.runner import _read_finished, semantic_consistency_proxy
from wsae_lens.autointerp.scoring import classification_metrics, metrics_from_counts


@pytest.fixture(scope="module")
def common_latents(topk_sae, byte_source):
    """Two live latents common enough to have held-out activating contexts (random choice may pick rare ones)."""
    scan = scan_source(topk_sae, byte_source, tiny_llm_config())
    n_active = (scan.context_max > 0).sum(0)
    return torch.nonzero((n_active >= 10) & (n_active <= 60)).flatten()[:2].tolist()


@pytest.fixture(scope="module")
def local_run(topk_sae, byte_source, local_client, common_latents, tmp_path_factory):
    out = tmp_path_factory.mktemp("local_run")
    return run_autointerp(
        topk_sae, byte_source, local_client, tiny_llm_config(), out, name="topk", latents=common_latents
    )


@pytest.mark.slow
def test_local_client_end_to_end(local_run, topk_sae, byte_source):
    cfg = tiny_llm_config()
    assert len(local_run.latents) == cfg.n_latents
    for row in local_run.latents:
        assert row["complete"] and row["explanation_error"] is None
        assert isinstance(row["explanation_reply"], str) and row["explanation_reply"]
        assert row["explanation"] is not None  # a non-empty reply always yields an explanation line
        for kind in ("detection", "fuzzing"):
            metrics, items = row[kind]["metrics"], row[kind]["items"]
            assert metrics["n"] == len(items) and metrics["n_failed"] == 0
            assert metrics["n_parsed"] + metrics["n_unparsable"] == len(items)  # every context accounted for
            assert all(isinstance(item["reply"], str) for item in items)
        labels = [item["label"] for item in row["detection"]["items"]]
        assert labels.count(False) == cfg.n_non_activating
        assert labels.count(True) == cfg.n_quantiles * cfg.n_examples_per_quantile
    on_disk = [json.loads(line) for line in (local_run.output_dir / "latents.jsonl").read_text().splitlines()]
    assert on_disk == local_run.latents
    summary = json.loads((local_run.output_dir / "summary.json").read_text())
    assert summary["n_latents"] == 2 and summary["n_incomplete"] == 0
    det = summary["detection"]
    assert det["n"] == sum(r["detection"]["metrics"]["n"] for r in local_run.latents)
    # the summary agrees with the stored answers (exact scoring is checked with a scripted client below)
    accuracies = []
    for row in local_run.latents:
        parsed = [item for item in row["detection"]["items"] if item["prediction"] is not None]
        assert row["detection"]["metrics"]["n_parsed"] == len(parsed)
        if parsed:
            accuracies.append(sum(item["prediction"] == item["label"] for item in parsed) / len(parsed))
    assert det["accuracy"] == (pytest.approx(sum(accuracies) / len(accuracies)) if accuracies else None)
    proxy = summary["semantic_consistency"]
    expected = semantic_consistency_by_definition(topk_sae, byte_source, cfg)
    assert proxy["mean"] == pytest.approx(expected[~expected.isnan()].mean().item())
    per_latent = {str(r["latent"]): expected[r["latent"]].item() for r in local_run.latents}
    assert proxy["per_latent"] == pytest.approx(per_latent)
    table = comparison_table({"topk": local_run})
    assert table.splitlines()[2].startswith("| topk | 2 | 2 |")


@pytest.mark.slow
def test_http_client_end_to_end_and_server_loss_keeps_finished_scores(
    topk_sae, byte_source, local_client, local_run, tmp_path
):
    first, second = (row["latent"] for row in local_run.latents)
    cfg = tiny_llm_config(fuzzing=False, semantic_consistency=False)
    with OpenAICompatibleServer(local_client) as server:
        client = OpenAICompatibleClient(
            base_url=server.base_url, model=server.model_name, max_retries=1, backoff_s=0.01, max_concurrency=2
        )
        over_http = run_autointerp(topk_sae, byte_source, client, cfg, tmp_path, latents=[first])
    row = over_http.latents[0]
    assert row["complete"] and row["detection"]["metrics"]["n_failed"] == 0
    # the server serves the same model: same prompt, greedy decoding, same explanation as the local run
    assert row["explanation_reply"] == local_run.latents[0]["explanation_reply"]

    # the server is gone now: the finished latent is kept, the new one is counted as failed, no crash
    resumed = run_autointerp(topk_sae, byte_source, client, cfg, tmp_path, latents=[first, second])
    assert resumed.latents[0] == row
    failed = resumed.latents[1]
    assert not failed["complete"] and "could not reach" in failed["explanation_error"]
    assert resumed.summary["n_explanation_request_failures"] == 1 and resumed.summary["n_incomplete"] == 1
    assert len((tmp_path / "latents.jsonl").read_text().splitlines()) == 2

    # a torn line (a crash mid-write) and the failed latent are dropped on resume; finished ones stay
    with (tmp_path / "latents.jsonl").open("a") as handle:
        handle.write('{"latent": 9, "expl')
    assert list(_read_finished(tmp_path / "latents.jsonl")) == [first]
    assert len((tmp_path / "latents.jsonl").read_text().splitlines()) == 1

    with pytest.raises(ValueError, match="different AutoInterpConfig"):
        run_autointerp(topk_sae, byte_source, client, tiny_llm_config(seed=1), tmp_path, latents=[first])


# --- Scoring with a scripted client whose every answer is known --------------------------------------------

SCRIPTED_CFG = tiny_llm_config(n_quantiles=2, n_examples_per_quantile=2, n_non_activating=3, semantic_consistency=False)


class ScriptedClient:
    """Answers the explainer with ``latent <id>`` and each scorer question by a fixed policy.

    The truth of every text is taken from the latent records built beforehand (held-out activating contexts
    are positives; for fuzzing, a text is positive iff it is an activating context marked on its own firing
    tokens), never from the runner's items. ``seen[(latent, kind)]`` lists the truths of the texts asked.
    Policies: ``correct``, ``wrong``, ``yes`` (always yes), ``unparsable``, ``failed`` (an LLMError per request).
    """

    def __init__(self, records, policy: str) -> None:
        self.policy = policy
        self.explainer_prompts = {
            explainer_messages(r.explanation_examples, SCRIPTED_CFG.activation_threshold)[0]["content"]: r.latent
            for r in records
        }
        self.truth: dict[tuple[int, str, str], bool] = {}
        for r in records:
            for e in r.activating_examples:
                self.truth[(r.latent, "detection", format_text(e.tokens))] = True
                self.truth[(r.latent, "fuzzing", format_example(e, SCRIPTED_CFG.activation_threshold))] = True
            for e in r.non_activating_examples:
                self.truth[(r.latent, "detection", format_text(e.tokens))] = False
        self.seen: dict[tuple[int, str], list[bool]] = {}

    def complete(self, messages, max_tokens):
        return self.complete_batch([messages], max_tokens)[0]

    def complete_batch(self, conversations, max_tokens):
        return [self._reply(conversation[-1]["content"]) for conversation in conversations]

    def _reply(self, content: str):
        if content in self.explainer_prompts:
            return f"Explanation: latent {self.explainer_prompts[content]}"
        latent = int(re.search(r'explanation: "latent (\d+)"', content).group(1))
        kind = "detection" if content.startswith(DETECTION_INTRO.split("{")[0]) else "fuzzing"
        body = content.split("\n\n")[1]  # "Text: ..." or "Texts:\n1. ...\n2. ..." (texts hold no newline)
        texts = [body.removeprefix("Text: ")] if body.startswith("Text: ") else [
            re.sub(r"^\d+\. ", "", line) for line in body.splitlines()[1:]
        ]
        truths = []
        for text in texts:
            default = None if kind == "detection" else False  # any other fuzzing text is wrongly marked
            truth = self.truth.get((latent, kind, text), default)
            assert truth is not None, f"unknown text for latent {latent}: {text!r}"
            truths.append(truth)
        self.seen.setdefault((latent, kind), []).extend(truths)
        if self.policy == "failed":
            return LLMError("scripted failure")
        if self.policy == "unparsable":
            return "I cannot tell." if len(texts) == 1 else "not sure"
        answers = {"correct": truths, "wrong": [not t for t in truths], "yes": [True] * len(truths)}[self.policy]
        if len(texts) == 1:
            return "Yes" if answers[0] else "No"
        return "[" + ", ".join("1" if a else "0" for a in answers) + "]"


def expected_metrics(policy: str, positives: int, negatives: int) -> dict:
    """The metrics of ``policy`` on P positives and N negatives, derived by hand."""
    p, n = positives, negatives
    if policy in ("unparsable", "failed"):
        key = "n_unparsable" if policy == "unparsable" else "n_failed"
        return {"n": p + n, "n_parsed": 0, key: p + n, "tp": 0, "fp": 0, "tn": 0, "fn": 0,
                "accuracy": None, "balanced_accuracy": None, "f1": None}
    tp, fn, tn, fp = {"correct": (p, 0, n, 0), "wrong": (0, p, 0, n), "yes": (p, 0, 0, n)}[policy]
    both = p > 0 and n > 0
    return {
        "n": p + n, "n_parsed": p + n, "n_unparsable": 0, "n_failed": 0, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "accuracy": {"correct": 1.0, "wrong": 0.0, "yes": p / (p + n)}[policy],
        "balanced_accuracy": {"correct": 1.0, "wrong": 0.0, "yes": 0.5}[policy] if both else None,
        "f1": {"correct": 1.0 if p else None, "wrong": 0.0, "yes": 2 * p / (2 * p + n)}[policy],
    }


@pytest.fixture(scope="module")
def scripted_setup(topk_sae, byte_source, common_latents):
    scan = scan_source(topk_sae, byte_source, SCRIPTED_CFG)
    records = build_latent_records(topk_sae, byte_source, SCRIPTED_CFG, latents=common_latents, scan=scan)
    return scan, records


def run_and_check_scripted(sae, source, scripted_setup, policy: str, contexts_per_prompt: int, output_dir) -> None:
    """Run the auto-interp with a ScriptedClient and assert every metric against ``expected_metrics``."""
    scan, records = scripted_setup
    client = ScriptedClient(records, policy)
    cfg = dataclasses.replace(SCRIPTED_CFG, contexts_per_prompt=contexts_per_prompt)
    result = run_autointerp(sae, source, client, cfg, output_dir, latents=[r.latent for r in records], scan=scan)
    assert [row["latent"] for row in result.latents] == [r.latent for r in records]
    pooled = {kind: {"tp": 0, "fp": 0, "tn": 0, "fn": 0, "n_parsed": 0} for kind in ("detection", "fuzzing")}
    macro: dict[str, list[float]] = {"detection": [], "fuzzing": []}
    for row, record in zip(result.latents, records):
        assert row["explanation"] == f"latent {record.latent}"
        for kind in ("detection", "fuzzing"):
            truths = client.seen[(record.latent, kind)]
            positives, negatives = truths.count(True), truths.count(False)
            assert positives + negatives == len(row[kind]["items"])  # every context asked exactly once
            if kind == "detection":  # the held-out positives and the negatives of the record
                assert (positives, negatives) == (len(record.activating_examples), len(record.non_activating_examples))
            else:
                assert positives + negatives == len(record.activating_examples)
            expected = expected_metrics(policy, positives, negatives)
            metrics = row[kind]["metrics"]
            assert {k: metrics[k] for k in expected} == pytest.approx(expected), (kind, record.latent)
            for key in pooled[kind]:
                pooled[kind][key] += expected[key]
            if expected["accuracy"] is not None:
                macro[kind].append(expected["accuracy"])
        assert row["complete"] is (policy != "failed")
    assert len(records) == 2 and all(len(r.activating_examples) == 4 for r in records)
    for kind in ("detection", "fuzzing"):
        summary = result.summary[kind]
        counts = pooled[kind]
        parsed = counts["n_parsed"]
        assert summary["n_parsed"] == parsed
        assert summary["accuracy"] == (pytest.approx(sum(macro[kind]) / len(macro[kind])) if macro[kind] else None)
        pooled_accuracy = (counts["tp"] + counts["tn"]) / parsed if parsed else None
        assert summary["pooled"]["accuracy"] == (pytest.approx(pooled_accuracy) if parsed else None)
        errors = counts["fp"] + counts["fn"]
        pooled_f1 = 2 * counts["tp"] / (2 * counts["tp"] + errors) if counts["tp"] + errors else None
        assert summary["pooled"]["f1"] == (pytest.approx(pooled_f1) if pooled_f1 is not None else None)
    assert result.summary["n_incomplete"] == (len(records) if policy == "failed" else 0)
    on_disk = [json.loads(line) for line in (output_dir / "latents.jsonl").read_text().splitlines()]
    assert on_disk == result.latents


@pytest.mark.parametrize("contexts_per_prompt", [1, 3])
@pytest.mark.parametrize("policy", ["correct", "wrong", "yes", "unparsable", "failed"])
def test_scores_of_a_scripted_client_are_exact(topk_sae, byte_source, scripted_setup, policy, contexts_per_prompt,
                                               tmp_path):
    run_and_check_scripted(topk_sae, byte_source, scripted_setup, policy, contexts_per_prompt, tmp_path)


@pytest.mark.parametrize("broken", ["false positives counted as misses", "replies shifted by one prompt"])
def test_scripted_client_exposes_broken_scoring(topk_sae, byte_source, scripted_setup, broken, tmp_path, monkeypatch):
    import wsae_lens.autointerp.runner as runner_module

    if broken == "false positives counted as misses":
        def swapped(items):
            metrics = classification_metrics(items)
            return metrics_from_counts(metrics["tp"], metrics["fn"], metrics["tn"], metrics["fp"],
                                       metrics["n_unparsable"], metrics["n_failed"])

        monkeypatch.setattr(runner_module, "classification_metrics", swapped)
    else:
        real_score_items = runner_module.score_items

        def shifted(client, *args, **kwargs):
            class Shifted:
                def complete_batch(self, conversations, max_tokens):
                    replies = client.complete_batch(conversations, max_tokens)
                    return replies[1:] + replies[:1]

            return real_score_items(Shifted(), *args, **kwargs)

        monkeypatch.setattr(runner_module, "score_items", shifted)
    with pytest.raises(AssertionError, match=r"\('detection', \d+\)"):  # the per-latent metrics differ
        run_and_check_scripted(topk_sae, byte_source, scripted_setup, "wrong", 1, tmp_path)


def semantic_consistency_by_definition(sae, source, cfg) -> torch.Tensor:
    """SC_j = max_c |{t active on j : token_t = c}| / |{t active on j}| over ``cfg.n_contexts`` contexts
    (active: |a_j| / ‖a‖ > 1e-6), NaN for latents never active (the WSAE paper's metric, written out)."""
    tokens = torch.cat(list(source.token_batches(cfg.n_contexts, cfg.batch_size)))
    with torch.no_grad():
        acts = sae.encode(source.activations(tokens)).reshape(-1, sae.cfg.d_sae)
    labels = tokens.reshape(-1)
    norms = acts.norm(dim=-1, keepdim=True)
    active = (norms > 0) & (acts.abs() / norms.clamp(min=1e-30) > 1e-6)
    scores = torch.full((sae.cfg.d_sae,), float("nan"), dtype=torch.float64)
    for j in range(sae.cfg.d_sae):
        counts = torch.bincount(labels[active[:, j]])
        if counts.sum() > 0:
            scores[j] = counts.max().item() / counts.sum().item()
    return scores


def test_semantic_consistency_proxy_matches_the_definition(topk_sae, byte_source, common_latents):
    cfg = dataclasses.replace(SCRIPTED_CFG, semantic_consistency=True)
    proxy = semantic_consistency_proxy(topk_sae, byte_source, cfg, common_latents)
    expected = semantic_consistency_by_definition(topk_sae, byte_source, cfg)
    live = ~expected.isnan()
    assert 0 < live.sum() < topk_sae.cfg.d_sae and expected[live].min() < 1  # not all trivially 1
    assert proxy["labels"] == "token id"
    assert proxy["mean"] == pytest.approx(expected[live].mean().item())
    assert proxy["per_latent"] == pytest.approx({j: expected[j].item() for j in common_latents})
    assert proxy["mean_scored_latents"] == pytest.approx(expected[common_latents].mean().item())

"""Metrics (hypothesis, against their definitions) and scorer item construction."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsae_lens.autointerp.records import Example, LatentRecord
from wsae_lens.autointerp.scoring import (
    ScoredItem,
    classification_metrics,
    detection_items,
    fuzzing_items,
    summarise_metrics,
)

answers = st.lists(st.tuples(st.booleans(), st.sampled_from([True, False, None, "failed"])), max_size=40)


def _items(pairs):
    return [
        ScoredItem("t", label, 0, prediction=None if p == "failed" else p, error="boom" if p == "failed" else None)
        for label, p in pairs
    ]


@given(answers)
def test_metrics_match_definitions(pairs):
    m = classification_metrics(_items(pairs))
    parsed = [(l, p) for l, p in pairs if p in (True, False)]
    assert m["n"] == len(pairs)
    assert m["n_failed"] == sum(p == "failed" for _, p in pairs)
    assert m["n_unparsable"] == sum(p is None for _, p in pairs)
    assert m["n_parsed"] == len(parsed) == m["tp"] + m["fp"] + m["tn"] + m["fn"]
    if parsed:
        assert m["accuracy"] == pytest.approx(sum(l == p for l, p in parsed) / len(parsed))
    positives = [p for l, p in parsed if l]
    negatives = [p for l, p in parsed if not l]
    if positives and negatives:
        tpr = sum(positives) / len(positives)
        tnr = sum(not p for p in negatives) / len(negatives)
        assert m["balanced_accuracy"] == pytest.approx((tpr + tnr) / 2)
    else:
        assert m["balanced_accuracy"] is None
    predicted_yes = [l for l, p in parsed if p]  # labels of the answers "yes"
    precision = sum(predicted_yes) / len(predicted_yes) if predicted_yes else None
    recall = sum(positives) / len(positives) if positives else None
    assert m["precision"] == (pytest.approx(precision) if precision is not None else None)
    assert m["recall"] == (pytest.approx(recall) if recall is not None else None)
    if precision and recall:  # F1 is the harmonic mean of precision and recall
        assert m["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    elif any(l or p for l, p in parsed):  # something to find or something found, yet no true positive
        assert m["f1"] == 0
    else:
        assert m["f1"] is None


@given(st.lists(st.booleans(), min_size=1, max_size=30))
def test_perfect_and_inverted_answers(labels):
    perfect = classification_metrics(_items([(l, l) for l in labels]))
    inverted = classification_metrics(_items([(l, not l) for l in labels]))
    assert perfect["accuracy"] == 1 and inverted["accuracy"] == 0
    if any(labels):
        assert perfect["f1"] == 1 and inverted["f1"] == 0


def test_summary_pools_counts_and_averages_latents():
    a = classification_metrics(_items([(True, True), (False, False)]))
    b = classification_metrics(_items([(True, False), (False, None), (True, "failed")]))
    s = summarise_metrics([a, b])
    assert s["accuracy"] == pytest.approx((1.0 + 0.0) / 2)
    assert s["n"] == 5 and s["n_unparsable"] == 1 and s["n_failed"] == 1 and s["n_latents_scored"] == 2
    assert s["pooled"]["accuracy"] == pytest.approx(2 / 3)


def _record():
    firing = Example(1, 0, [" a", " b", " c", " d", " e"], [0.0, 3.0, 0.0, 0.0, 0.0], quantile=0)
    weak = Example(2, 0, [" f", " g", " h", " i"], [0.5, 0.0, 0.0, 0.0], quantile=1)
    silent = Example(3, 0, [" x", " y"], [0.0, 0.0])
    return LatentRecord(7, [firing], [firing, weak] * 4, [silent] * 3)


def test_detection_items_are_unmarked_and_labelled():
    items = detection_items(_record(), random.Random(0))
    assert sorted(i.label for i in items) == [False] * 3 + [True] * 8
    assert all("<<" not in i.text for i in items)
    assert [i.label for i in items] != sorted(i.label for i in items)  # shuffled


def test_fuzzing_items_mark_the_right_or_other_tokens():
    items = fuzzing_items(_record(), random.Random(0))
    assert len(items) == 8 and {i.label for i in items} == {True, False}
    for item in items:
        right = item.text in (" a <<b>> c d e", " <<f>> g h i")
        assert item.label == right and item.text.count("<<") == 1

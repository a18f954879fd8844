"""Ranking metrics on hand-made outcomes with answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamrec.ranking_metrics import MetricsAccumulator, hit_rate, mrr, ndcg, summarize


def test_rank_one_is_perfect_and_a_miss_is_zero():
    assert ndcg(np.array([1]), 10) == 1.0
    assert hit_rate(np.array([1]), 10) == 1.0
    assert mrr(np.array([1]), 10) == 1.0
    for metric in (ndcg, hit_rate, mrr):
        assert metric(np.array([0]), 10) == 0.0


def test_known_values_and_cutoffs():
    ranks = np.array([1, 3, 0, 12])
    assert hit_rate(ranks, 10) == 0.5
    assert hit_rate(ranks, 20) == 0.75
    assert ndcg(ranks, 10) == pytest.approx((1 + 1 / math.log2(4)) / 4)  # rank 3 → 0.5
    assert ndcg(np.array([3]), 10) == 0.5
    assert mrr(ranks, 10) == pytest.approx((1 + 1 / 3) / 4)
    assert mrr(ranks, 2) == 0.25


def test_empty_spans_are_nan_then_null():
    assert math.isnan(hit_rate(np.array([], dtype=int), 10))
    stats = summarize(np.array([1]), np.array([True]), np.array([False]), np.array([0.001]),
                      0.002, (10,))
    assert stats["hr@10"] is None  # the only event was cold: no warm denominator
    assert stats["cold_hr@10"] == 1.0
    assert stats["cold_start_share"] == 1.0
    assert stats["events_per_s"] == pytest.approx(500.0)


def test_accumulator_splits_cold_repeat_and_windows():
    acc = MetricsAccumulator(ks=(1, 2), window=2)
    acc.add(1, cold=True, repeat=False, latency_s=0.001, recommended=["a"], catalog_size=4)
    acc.add(2, cold=False, repeat=False, latency_s=0.002, recommended=["b", "c"], catalog_size=4)
    acc.add(0, cold=False, repeat=True, latency_s=0.003, recommended=["b"], catalog_size=4)
    summary = acc.summary()
    overall = summary["overall"]
    assert (overall["events"], overall["evaluated"], overall["cold_events"],
            overall["repeat_events"]) == (3, 1, 1, 1)
    assert overall["hr@1"] == 0.0 and overall["hr@2"] == 1.0
    assert overall["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert overall["cold_hr@1"] == 1.0
    assert overall["coverage@1"] == 0.5 and overall["coverage@2"] == 0.75  # {a,b} / {a,b,c}
    assert overall["latency_p50_ms"] == pytest.approx(2.0)
    assert [(w["start"], w["end"]) for w in summary["windows"]] == [(0, 2), (2, 3)]
    assert summary["windows"][1]["evaluated"] == 0 and summary["windows"][1]["hr@1"] is None
    assert summary["windows"][0]["coverage@2"] == 0.75

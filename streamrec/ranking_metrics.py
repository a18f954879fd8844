"""Ranking metrics for replay: HR@K, NDCG@K, MRR@K, coverage, cold start, latency.

A replayed event's outcome is the 1-based rank of its item in the system's list, or 0 for
a miss. The headline metrics count only *warm* events (the user already has history) whose
item is new to the user: a cold user cannot be personalised and a repeat of a seen item is
excluded from every list by construction, so both are reported beside the headline, never
inside it.

>>> ranks = np.array([1, 0, 3])
>>> hit_rate(ranks, 2), ndcg(ranks, 1), round(mrr(ranks, 10), 4)
(0.3333333333333333, 0.3333333333333333, 0.4444)
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Sequence

import numpy as np


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """Share of events whose item is in the top ``k`` (rank 0 = miss)."""
    return float(np.mean((ranks > 0) & (ranks <= k))) if ranks.size else math.nan


def ndcg(ranks: np.ndarray, k: int) -> float:
    """Mean ``1 / log2(rank + 1)`` over events, 0 for a miss: one relevant item per event."""
    if not ranks.size:
        return math.nan
    hit = (ranks > 0) & (ranks <= k)
    gains = np.zeros(ranks.shape, dtype=np.float64)
    gains[hit] = 1.0 / np.log2(ranks[hit] + 1.0)
    return float(gains.mean())


def mrr(ranks: np.ndarray, k: int) -> float:
    """Mean reciprocal rank, counting only ranks within ``k``."""
    if not ranks.size:
        return math.nan
    hit = (ranks > 0) & (ranks <= k)
    recip = np.zeros(ranks.shape, dtype=np.float64)
    recip[hit] = 1.0 / ranks[hit]
    return float(recip.mean())


def _clean(value: float) -> float | None:
    """NaN (an empty denominator) becomes ``None`` so JSON says null, not NaN."""
    return None if value != value else value


def summarize(ranks: np.ndarray, cold: np.ndarray, repeat: np.ndarray,
              latency_s: np.ndarray, busy_s: float, ks: Sequence[int],
              coverage: dict[int, float] | None = None) -> dict[str, float | int | None]:
    """Every metric over one span of events (a window or the whole run)."""
    warm = ~cold & ~repeat
    cold_new = cold & ~repeat
    n = int(ranks.size)
    out: dict[str, float | int | None] = {
        "events": n,
        "evaluated": int(warm.sum()),
        "cold_events": int(cold.sum()),
        "repeat_events": int(repeat.sum()),
        "cold_start_share": _clean(float(cold.mean()) if n else math.nan),
    }
    for k in ks:
        out[f"hr@{k}"] = _clean(hit_rate(ranks[warm], k))
        out[f"ndcg@{k}"] = _clean(ndcg(ranks[warm], k))
        out[f"mrr@{k}"] = _clean(mrr(ranks[warm], k))
        out[f"cold_hr@{k}"] = _clean(hit_rate(ranks[cold_new], k))
        if coverage is not None:
            out[f"coverage@{k}"] = coverage.get(k)
    if latency_s.size:
        p50, p99 = np.percentile(latency_s, [50, 99])
        out["latency_p50_ms"] = float(p50) * 1e3
        out["latency_p99_ms"] = float(p99) * 1e3
        out["latency_mean_ms"] = float(latency_s.mean()) * 1e3
    out["events_per_s"] = _clean(n / busy_s if busy_s > 0 else math.nan)
    return out


class MetricsAccumulator:
    """Collects one system's per-event outcomes and summarises them overall and per window.

    ``window`` is a number of replayed events (cold and repeats included), so windows of
    different systems line up. Coverage needs the recommended items themselves, so it is
    folded in as events arrive rather than kept per event.
    """

    def __init__(self, ks: Sequence[int], window: int) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self.ks = tuple(sorted(set(ks)))
        self.window = window
        self.ranks: list[int] = []
        self.cold: list[bool] = []
        self.repeat: list[bool] = []
        self.latency_s: list[float] = []
        self.learn_s: list[float] = []
        self.exclusion_violations = 0
        self._recommended = {k: set() for k in self.ks}  # type: dict[int, set[str]]
        self._window_recommended = {k: set() for k in self.ks}  # type: dict[int, set[str]]
        self._window_coverage: list[dict[int, float]] = []
        self._catalog_size = 0

    def add(self, rank: int, cold: bool, repeat: bool, latency_s: float,
            recommended: Sequence[str], catalog_size: int) -> None:
        """Record one evaluated event; ``catalog_size`` = distinct items seen before it."""
        self.ranks.append(rank)
        self.cold.append(cold)
        self.repeat.append(repeat)
        self.latency_s.append(latency_s)
        self._catalog_size = catalog_size
        for k in self.ks:
            head = recommended[:k]
            self._recommended[k].update(head)
            self._window_recommended[k].update(head)
        if len(self.ranks) % self.window == 0:
            self._close_window()

    def add_learn_time(self, seconds: float) -> None:
        self.learn_s.append(seconds)

    def outcome_digest(self) -> str:
        """sha256 of everything the figures are computed from, timings aside: per-event
        ranks, cold and repeat flags, exclusion violations and coverage. Two replays computed
        the same thing exactly when their digests are equal (latencies are measurements)."""
        coverage = {k: len(items) for k, items in self._recommended.items()}
        payload = json.dumps([self.ranks, self.cold, self.repeat, self.exclusion_violations,
                              sorted(coverage.items()), self._window_coverage])
        return hashlib.sha256(payload.encode()).hexdigest()

    def _close_window(self) -> None:
        size = max(self._catalog_size, 1)
        self._window_coverage.append({k: len(s) / size for k, s in self._window_recommended.items()})
        self._window_recommended = {k: set() for k in self.ks}

    def summary(self) -> dict[str, Any]:
        """``{"overall": {...}, "windows": [{...}, ...], "exclusion_violations": n}``."""
        ranks = np.asarray(self.ranks, dtype=np.int64)
        cold = np.asarray(self.cold, dtype=bool)
        repeat = np.asarray(self.repeat, dtype=bool)
        latency = np.asarray(self.latency_s, dtype=np.float64)
        learn = np.asarray(self.learn_s, dtype=np.float64)
        if len(learn) < len(latency):
            learn = np.concatenate([learn, np.zeros(len(latency) - len(learn))])
        size = max(self._catalog_size, 1)
        coverage = {k: len(s) / size for k, s in self._recommended.items()}
        window_coverage = list(self._window_coverage)
        if len(self.ranks) % self.window:
            window_coverage.append({k: len(s) / size
                                    for k, s in self._window_recommended.items()})
        windows = []
        for w, start in enumerate(range(0, len(ranks), self.window)):
            span = slice(start, start + self.window)
            busy = float(latency[span].sum() + learn[span].sum())
            stats = summarize(ranks[span], cold[span], repeat[span], latency[span], busy,
                              self.ks, window_coverage[w])
            windows.append({"start": start, "end": min(start + self.window, len(ranks)),
                            **stats})
        overall = summarize(ranks, cold, repeat, latency, float(latency.sum() + learn.sum()),
                            self.ks, coverage)
        return {"overall": overall, "windows": windows,
                "exclusion_violations": self.exclusion_violations}

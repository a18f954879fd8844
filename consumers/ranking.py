"""Final reranking in the scorer: fuse the online ranking, deep candidates, co-visitation and
next-item transitions.

All lists arrive best first and already without the user's seen items. Scores of the
sources live on different scales (RRF sums, logits, counts), so they are fused by weighted
reciprocal rank: ``sum_source w_source / (rrf_k + rank_source)``. Each
item carries what explains it: the online components' ranks, its deep rank and the deep
model's log-probability, its co-visitation rank and score, its transition rank and score.
"""

from __future__ import annotations

import heapq
from typing import Sequence

Ranked = list[tuple[str, float, dict[str, float]]]

RRF_K = 10.0


def fuse(online: Ranked, deep: Sequence, k: int, online_weight: float = 1.0,
         deep_weight: float = 1.0, covisit: Sequence[tuple[str, float]] = (),
         covisit_weight: float = 1.0, transitions: Sequence[tuple[str, float]] = (),
         transition_weight: float = 1.0) -> Ranked:
    """Top-k of the union of ``online``, ``deep`` (``DeepCandidate`` objects), ``covisit``
    and ``transitions``."""
    scores: dict[str, float] = {}
    online_at: dict[str, tuple[int, dict[str, float]]] = {}
    for rank, (item, _, components) in enumerate(online, 1):
        scores[item] = online_weight / (RRF_K + rank)
        online_at[item] = (rank, components)
    deep_at: dict[str, tuple[int, float]] = {}
    for rank, candidate in enumerate(deep, 1):
        item = candidate.item_id
        scores[item] = scores.get(item, 0.0) + deep_weight / (RRF_K + rank)
        deep_at[item] = (rank, candidate.log_prob)
    covisit_at: dict[str, tuple[int, float]] = {}
    for rank, (item, score) in enumerate(covisit, 1):
        scores[item] = scores.get(item, 0.0) + covisit_weight / (RRF_K + rank)
        covisit_at[item] = (rank, score)
    transition_at: dict[str, tuple[int, float]] = {}
    for rank, (item, score) in enumerate(transitions, 1):
        scores[item] = scores.get(item, 0.0) + transition_weight / (RRF_K + rank)
        transition_at[item] = (rank, score)
    # Ties (an item equally placed by several sources) resolve by item id for determinism.
    best = heapq.nsmallest(k, scores, key=lambda i: (-scores[i], i))
    fused: Ranked = []
    for item in best:  # explanations only for what is published: this runs per trigger
        parts: dict[str, float] = {}
        if item in online_at:
            rank, components = online_at[item]
            parts.update(components)
            parts["online_rank"] = float(rank)
        if item in deep_at:
            rank, log_prob = deep_at[item]
            parts.update(deep_rank=float(rank), deep_log_prob=log_prob)
        if item in covisit_at:
            rank, score = covisit_at[item]
            parts.update(covisit_rank=float(rank), covisit_score=score)
        if item in transition_at:
            rank, score = transition_at[item]
            parts.update(transition_rank=float(rank), transition_score=score)
        fused.append((item, scores[item], parts))
    return fused

"""The scorer's per-trigger ranking path as it was before batch-first scoring (issue 13).

A frozen copy, kept so that ``benchmarks/scorer.py`` measures "new / before" in the same
run (and a batch-first path can be checked to publish exactly what this one does). Only the ranking path is copied (``process``,
the online blend's fusion, co-visitation, the final fusion); decoding, the mirror, the
deep read-ahead and publishing are the live ``ScoreProcessor``'s, and so are the
components' own ``recommend`` methods (embedding, FM, popularity, item-side table): if
those get faster, this reference gets faster too, so the measured ratio is conservative.

Not a benchmark by itself (``make bench`` runs every file here: this one does nothing).
"""

from __future__ import annotations

import heapq
from typing import Callable, Collection, Sequence

import numpy as np

from streamrec.consumers.score import (ONLINE_MODEL_VERSION, POPULARITY_MODEL_VERSION,
                             RecommendationRequest, ScoreProcessor)
from streamrec.online_models.base import Ranking
from streamrec.online_models.baselines import top_k
from streamrec.online_models.user_state import UserState
from streamrec.records import ProcessResult, Record

Explained = list[tuple[str, float, dict[str, float]]]
RRF_K = 10.0


def reference_fuse(online: Explained, deep: Sequence, k: int, online_weight: float = 1.0,
                   deep_weight: float = 1.0, covisit: Sequence[tuple[str, float]] = (),
                   covisit_weight: float = 1.0) -> Explained:
    """``streamrec.consumers.ranking.fuse`` as it was."""
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
    best = heapq.nsmallest(k, scores, key=lambda i: (-scores[i], i))
    fused: Explained = []
    for item in best:
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
        fused.append((item, scores[item], parts))
    return fused


def reference_blend_explained(blend: object, user_id: str, vector: Sequence[float] | None,
                              recent_items: Sequence[str] | None, k: int,
                              exclude: Collection[str] = ()) -> Explained:
    """``OnlineBlend.recommend_explained_for`` (with its ``_fused``) as it was."""
    b: object = blend
    depth = max(b.candidates, k)  # type: ignore[attr-defined]
    components: list[tuple[str, float, Callable[[], Ranking]]] = [
        ("embedding", b.embedding_weight,  # type: ignore[attr-defined]
         lambda: b.embeddings.recommend(user_id, depth, exclude, vector=vector)),  # type: ignore[attr-defined]
        ("fm", b.fm_weight,  # type: ignore[attr-defined]
         lambda: b.fm.recommend(user_id, depth, exclude, recent_items=recent_items)),  # type: ignore[attr-defined]
        ("recency", b.recency_weight,  # type: ignore[attr-defined]
         lambda: b.recency.recommend(user_id, depth, exclude))]  # type: ignore[attr-defined]
    rrf_k = b.rrf_k  # type: ignore[attr-defined]
    fused: dict[str, float] = {}
    ranks: dict[str, dict[str, float]] = {}
    for name, weight, ranking in components:
        if weight <= 0:
            continue
        for rank, (item, _) in enumerate(ranking(), 1):
            fused[item] = fused.get(item, 0.0) + weight / (rrf_k + rank)
            ranks.setdefault(item, {})[name] = float(rank)
    if not fused:
        return []
    items = list(fused)
    best = top_k(np.fromiter(fused.values(), dtype=np.float64, count=len(items)), k)
    return [(items[i], fused[items[i]], ranks[items[i]]) for i in best.tolist()]


class ReferenceScoreProcessor(ScoreProcessor):
    """``ScoreProcessor`` ranking each trigger on its own, in Python, as before issue 13."""

    def process(self, batch: list[Record], publish: bool = True) -> ProcessResult:
        result = ProcessResult()
        deep = self._deep
        started = self._clock()
        ahead, decoded = (self._deep_ahead(deep, batch) if publish and deep is not None
                          else ({}, {}))
        for index, record in enumerate(batch):
            if record.topic == self.topics.requests:
                if not publish:
                    continue
                known = decoded.get(index)
                request = (known if isinstance(known, RecommendationRequest)
                           else self._decode_request(record, result))
                if request is None:
                    continue
                user_id, state = request.user_id, self.state_of(request.user_id)
                excluded = self._exclusions(state, request.exclude_items)
                deep_list = self._deep_list(deep, state, excluded, ahead.get(index))
                ranked, version = self._reference_ranking(
                    user_id, self._k_of(request), excluded, state, deep, deep_list)
                output = self._publish(user_id, request.request_id, "request", ranked,
                                       state.last_ts if state else 0.0, started,
                                       record.timestamp_ms, version)
            else:
                peeked = decoded.get(index)
                state = self._apply_state_record(
                    record, self._mirror.setdefault(record.partition, {}),
                    decoded=peeked if isinstance(peeked, tuple) else None)
                if state is None or not publish:
                    continue
                user_id = state.user_id
                excluded = self._exclusions(state, ())
                deep_list = self._deep_list(deep, state, excluded, ahead.get(index))
                ranked, version = self._reference_ranking(
                    user_id, self._k_of(None), excluded, state, deep, deep_list)
                output = self._publish(user_id, state.last_event_id, "event", ranked,
                                       state.last_ts, started, state.trigger_produced_ms,
                                       version)
            result.outputs.append(output)
            located = self._locate(user_id)
            if located is not None:
                self.drift.recommended(located[0], user_id, ranked)
            result.processed += 1
        result.outputs.extend(self.drift.take_outputs(sorted(self._mirror)))
        return result

    def _deep_list(self, deep: object | None, state: UserState | None, excluded: set[str],
                   ahead: tuple | None) -> list:  # type: ignore[override]
        if deep is None:
            return []
        if ahead is not None and ahead[0] == self._sequence(state) and ahead[1] == excluded:
            return ahead[2]
        return self._deep_lists(deep, [state], [excluded])[0]

    def _deep_lists(self, deep: object | None, states: list[UserState | None],
                    excludes: list[set[str]]) -> list[list]:  # type: ignore[override]
        if deep is None:
            return [[] for _ in states]
        sequences = [self._sequence(state) for state in states]
        return deep.generate(sequences, excludes, self.deep_candidates)  # type: ignore[attr-defined]

    def rank(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Explained:
        deep, state = self._deep, self.state_of(user_id)
        excluded = self._exclusions(state, exclude)
        deep_list = self._deep_lists(deep, [state], [excluded])[0]
        return self._reference_ranking(user_id, k, excluded, state, deep, deep_list)[0]

    def _reference_ranking(self, user_id: str, k: int, excluded: set[str],
                           state: UserState | None, deep: object | None, deep_list: list
                           ) -> tuple[Explained, str]:
        ranked, version = self._reference_online(user_id, k, excluded, state)
        covisited = self._reference_covisited(k, excluded, state)
        if deep_list or covisited:
            settings = self.settings
            ranked = reference_fuse(ranked, deep_list, k, online_weight=settings.online_weight,
                                    deep_weight=settings.deep_weight, covisit=covisited,
                                    covisit_weight=settings.covisit_weight)
        if deep_list:
            version = f"{deep.model_version}+{version}"  # type: ignore[union-attr]
        return ranked[:k], version

    def _reference_covisited(self, k: int, excluded: set[str], state: UserState | None
                             ) -> list[tuple[str, float]]:
        if self.settings.covisit_weight <= 0 or state is None or not state.recent_items:
            return []
        return self.item_side.recommend_context(state.recent_items,
                                                self._fusion_depth(k), excluded)

    def _reference_online(self, user_id: str, k: int, excluded: set[str],
                          state: UserState | None) -> tuple[Explained, str]:
        located = self._locate(user_id) if state is not None else None
        blend = self._models.get(located[0]) if located is not None else None
        if blend is not None and state is not None:
            vector = state.embedding
            if vector is not None and len(vector) != blend.embeddings.current_dim:  # type: ignore[attr-defined]
                vector = None
                self.stale_embedding_states += 1
            ranked = reference_blend_explained(blend, user_id, vector, state.recent_items,
                                               self._fusion_depth(k), excluded)
            if len(ranked) >= min(k, 1):
                return ranked, ONLINE_MODEL_VERSION
        return (self.item_side.recommend_explained(self._fusion_depth(k), excluded),
                POPULARITY_MODEL_VERSION)


if __name__ == "__main__":
    print("a helper of benchmarks/scorer.py (the frozen reference scorer): run that one")

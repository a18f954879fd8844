"""fuse: weighted reciprocal-rank fusion against a plain reference, explanations included."""

from __future__ import annotations

import random

from streamrec.consumers.ranking import RRF_K, fuse
from streamrec.export.candidates import DeepCandidate


def _reference(online, deep, covisit, k, w_online, w_deep, w_covisit):
    scores: dict[str, float] = {}
    for weight, items in ((w_online, [i for i, _, _ in online]),
                          (w_deep, [c.item_id for c in deep]), (w_covisit, [i for i, _ in covisit])):
        for rank, item in enumerate(items, 1):
            scores[item] = scores.get(item, 0.0) + weight / (RRF_K + rank)
    return sorted(scores, key=lambda i: (-scores[i], i))[:k], scores


def test_fusion_matches_the_reference_on_random_lists():
    rng = random.Random(5)
    for _ in range(200):
        pool = [f"i{n}" for n in range(40)]
        online = [(i, 0.0, {"embedding": float(r)}) for r, i in enumerate(rng.sample(pool, 15), 1)]
        deep = [DeepCandidate(i, 1.0, -float(r)) for r, i in enumerate(rng.sample(pool, 12), 1)]
        covisit = [(i, 2.0) for i in rng.sample(pool, rng.randint(0, 10))]
        k = rng.randint(1, 12)
        weights = (rng.choice([0.5, 1.0]), rng.choice([1.0, 2.0]), rng.choice([0.0, 1.5]))
        fused = fuse(online, deep, k, *weights[:2], covisit=covisit, covisit_weight=weights[2])
        best, scores = _reference(online, deep, covisit, k, *weights)
        assert [item for item, _, _ in fused] == best
        assert [score for _, score, _ in fused] == [scores[i] for i in best]


def test_each_item_is_explained_by_the_sources_that_ranked_it():
    online = [("a", 0.3, {"embedding": 1.0}), ("b", 0.2, {"fm": 2.0})]
    deep = [DeepCandidate("b", 5.0, -0.1), DeepCandidate("c", 4.0, -0.5)]
    fused = dict((item, parts) for item, _, parts in fuse(online, deep, 3, covisit=[("c", 0.9)]))
    assert fused["a"] == {"embedding": 1.0, "online_rank": 1.0}
    assert fused["b"] == {"fm": 2.0, "online_rank": 2.0, "deep_rank": 1.0, "deep_log_prob": -0.1}
    assert fused["c"] == {"deep_rank": 2.0, "deep_log_prob": -0.5, "covisit_rank": 1.0,
                          "covisit_score": 0.9}

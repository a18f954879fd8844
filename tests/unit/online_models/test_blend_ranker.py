"""BlendRanker ranks many users exactly as OnlineBlend.recommend_explained_for ranks each."""

from __future__ import annotations

import random

import numpy as np
import pytest

from streamrec.events import ClickEvent
from streamrec.online_models.blend import OnlineBlend
from streamrec.online_models.blend_ranker import BlendRanker, RankQuery, top_k_rows
from streamrec.online_models.baselines import top_k


def trained_blend(seed: int, n_events: int = 1_500, n_items: int = 120, **weights) -> OnlineBlend:
    rng = random.Random(seed)
    blend = OnlineBlend(seed=seed, candidates=30, **weights)
    events = []
    for n in range(n_events):
        user = f"u{rng.randrange(40)}"
        # Skewed items so that scores tie (same counts) and some items stay unseen by some.
        item = f"i{min(int(rng.expovariate(1 / 25)), n_items - 1)}"
        events.append(ClickEvent(event_id=str(n), user_id=user, item_id=item, type="click",
                                 ts=float(n // 3)))  # repeated times: recency ties
    for start in range(0, len(events), 100):
        blend.learn_many(events[start:start + 100])
    return blend


def queries(blend: OnlineBlend, seed: int, n: int = 60) -> list[RankQuery]:
    rng = random.Random(seed + 1)
    items = [f"i{i}" for i in range(130)]  # a few the blend never saw
    out = []
    for row in range(n):
        user = f"u{rng.randrange(50)}"  # some unknown users
        vector = None
        if rng.random() < 0.6:
            vector = [rng.gauss(0, 0.3) for _ in range(blend.embeddings.current_dim)]
        recent = None if rng.random() < 0.3 else rng.choices(items, k=rng.randrange(0, 12))
        # Some rows exclude most of the catalogue: lists shorter than the depth.
        exclude = set(rng.sample(items, rng.choice([0, 3, 20, 110, 129])))
        out.append(RankQuery(user, vector, recent, exclude))
    return out


def expected(blend: OnlineBlend, query: RankQuery, k: int) -> list:
    return blend.recommend_explained_for(query.user_id, query.vector, query.recent_items, k,
                                         query.exclude)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [5, 30, 50])
def test_rank_many_is_recommend_explained_for_of_every_row(seed: int, k: int) -> None:
    blend = trained_blend(seed)
    ranker = BlendRanker(blend)
    batch = queries(blend, seed)
    rows = ranker.rank_many(batch, k)
    assert any(len(row) == k for row in rows) and any(len(row) < k for row in rows)
    for query, row in zip(batch, rows):
        got = [(ranker.ids[slot], score, row.explanation(i, ranker.names))
               for i, (slot, score) in enumerate(zip(row.slots.tolist(), row.scores.tolist()))]
        assert got == expected(blend, query, k)  # items, order, scores and ranks bit for bit


def test_rank_many_with_a_component_weighted_out() -> None:
    blend = trained_blend(3, fm_weight=0.0)
    ranker = BlendRanker(blend)
    assert ranker.names == ("embedding", "recency")
    batch = queries(blend, 3, n=20)
    for query, row in zip(batch, ranker.rank_many(batch, 10)):
        got = [(ranker.ids[s], v, row.explanation(i, ranker.names))
               for i, (s, v) in enumerate(zip(row.slots.tolist(), row.scores.tolist()))]
        assert got == expected(blend, query, 10)


def test_ranks_anything_says_when_every_known_item_is_excluded() -> None:
    blend = trained_blend(4, n_events=200, n_items=6)
    ranker = BlendRanker(blend)
    everything = ranker.excluded_slots(set(ranker.ids))
    assert not ranker.ranks_anything(everything)
    assert ranker.rank_many([RankQuery("u1", None, None, set(ranker.ids))], 5)[0].slots.size == 0
    assert expected(blend, RankQuery("u1", None, None, set(ranker.ids)), 5) == []
    assert ranker.ranks_anything(everything[1:])


def test_ranking_many_writes_nothing_into_the_blend() -> None:
    blend = trained_blend(5)
    before = blend.to_state()
    BlendRanker(blend).rank_many(queries(blend, 5), 20)
    assert blend.to_state() == before


def test_a_vector_of_the_wrong_size_is_refused() -> None:
    ranker = BlendRanker(trained_blend(6, n_events=100))
    with pytest.raises(ValueError, match="shape"):
        ranker.rank_many([RankQuery("u1", [0.0, 1.0], None, set())], 5)


@pytest.mark.parametrize("k", [1, 4, 10, 25])
def test_top_k_rows_is_top_k_of_each_row(k: int) -> None:
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 6, size=(40, 20)).astype(np.float64)  # many ties
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    rows, cols = top_k_rows(scores, k)
    for r in range(scores.shape[0]):
        assert cols[rows == r].tolist() == top_k(scores[r].copy(), k).tolist()

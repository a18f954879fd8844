"""Baselines: the shared learner checks, plus hand-checked scores for each model."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from learner_checks import learner_check_params

from streamrec.online_models.baselines import (ItemKNN, MarkovChain, MostPopular, RecentPopular, RiverMF,
                                     top_k)
from streamrec.events import ClickEvent

FACTORIES = {
    "most-popular": MostPopular,
    "recent-popular": lambda: RecentPopular(half_life_s=3600.0),
    "item-knn": ItemKNN,
    "markov": MarkovChain,
    "river-mf": lambda: RiverMF(seed=3, negatives=2),
}


def click(user: str, item: str, ts: float = 0.0, value: float | None = None) -> ClickEvent:
    return ClickEvent(event_id=f"{user}-{item}-{ts}", user_id=user, item_id=item, type="click",
                      ts=ts, value=value)


def learned(model, pairs):
    for n, (user, item) in enumerate(pairs):
        model.learn_one(click(user, item, float(n)))
    return model


@pytest.mark.parametrize("check,factory", learner_check_params(FACTORIES))
def test_learner_checks(check, factory):
    check(factory)


def test_top_k_breaks_ties_by_index_and_drops_excluded():
    scores = np.array([1.0, 3.0, 1.0, 3.0, -np.inf, 1.0])
    assert top_k(scores, 3).tolist() == [1, 3, 0]
    assert top_k(scores, 10).tolist() == [1, 3, 0, 2, 5]


def test_most_popular_counts_and_first_seen_ties():
    model = learned(MostPopular(), [("a", "x"), ("b", "y"), ("c", "y"), ("d", "z")])
    assert model.recommend("new", 3) == [("y", 2.0), ("x", 1.0), ("z", 1.0)]
    assert model.recommend("new", 3, exclude={"y"}) == [("x", 1.0), ("z", 1.0)]


def test_recent_popular_prefers_recent_events():
    model = RecentPopular(half_life_s=10.0)
    for ts, item in [(0, "old"), (1, "old"), (2, "old"), (100, "new")]:
        model.learn_one(click("u", item, float(ts)))
    assert [item for item, _ in model.recommend("v", 2)] == ["new", "old"]


def test_recent_popular_rebases_without_overflow():
    model = RecentPopular(half_life_s=1.0)
    for ts in range(0, 5000, 50):
        model.learn_one(click("u", f"i{ts % 3}", float(ts)))
    scores = [score for _, score in model.recommend("v", 3)]
    assert all(np.isfinite(scores)) and scores[0] > 0


def test_item_knn_scores_match_the_formula():
    model = learned(ItemKNN(), [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "c"),
                                ("u3", "a"), ("u3", "b"), ("u4", "a")])
    # n: a=4, b=2, c=1; C[a,b]=2, C[a,c]=1. u4's history is [a].
    scores = dict(model.recommend("u4", 5, exclude={"a"}))
    assert scores["b"] == pytest.approx(2 / np.sqrt(4 * 2))
    assert scores["c"] == pytest.approx(1 / np.sqrt(4 * 1))


def test_item_knn_grows_past_initial_capacity():
    model = learned(ItemKNN(), [("u", f"i{n}") for n in range(200)])
    assert model.cooc.shape[0] >= 200
    assert model.cooc[0, 199] == 1.0 and model.cooc[199, 0] == 1.0


def test_item_knn_uses_only_last_items():
    model = ItemKNN(recent=1)
    learned(model, [("u1", "a"), ("u1", "x"), ("u2", "b"), ("u2", "y"), ("me", "a"), ("me", "b")])
    assert model.recommend("me", 1, exclude={"a", "b"})[0][0] == "y"


def test_markov_follows_transitions_then_popularity():
    model = learned(MarkovChain(), [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"),
                                    ("u3", "a"), ("u3", "c"), ("u4", "z"), ("u5", "z"),
                                    ("u6", "z"), ("me", "a")])
    assert [item for item, _ in model.recommend("me", 3, exclude={"a"})] == ["b", "c", "z"]


def test_river_mf_recommend_never_creates_vectors_for_unknowns():
    model = RiverMF(seed=1)
    for n in range(20):
        model.learn_one(click(f"u{n % 4}", f"i{n % 7}", float(n), value=float(n % 5)))
    users, items = len(model.model.u_latents), len(model.model.i_latents)
    before = pickle.dumps(model)
    ranking = model.recommend("stranger", 10, exclude={"unknown-item"})
    assert len(ranking) == 7
    assert "stranger" not in model.model.u_latents
    assert (len(model.model.u_latents), len(model.model.i_latents)) == (users, items)
    assert pickle.dumps(model) == before


def test_river_mf_scores_equal_river_predictions_for_known_pairs():
    model = RiverMF(seed=1)
    for n in range(30):
        model.learn_one(click(f"u{n % 3}", f"i{n % 5}", float(n), value=float(1 + n % 5)))
    for item, score in model.recommend("u1", 5):
        assert score == pytest.approx(model.model.predict_one("u1", item))

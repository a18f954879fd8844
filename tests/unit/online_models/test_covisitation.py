"""Co-visitation counts: what pairs, how rows stay bounded, and that history is the context."""

from __future__ import annotations

import math

import pytest

from online_models.covisitation import CoVisitation
from streamrec.events import ClickEvent


def _visit(model: CoVisitation, user: str, *items: str) -> None:
    for n, item in enumerate(items):
        model.learn_one(ClickEvent(event_id=f"{user}{n}", user_id=user, item_id=item,
                                   type="click", ts=float(n)))


def test_a_new_item_pairs_with_the_last_window_items_only():
    model = CoVisitation(window=2, recent=5)
    _visit(model, "u", "a", "b", "c", "d")
    index = model.items.index
    row_d = model.pairs[index["d"]]
    assert row_d == {index["b"]: 1.0, index["c"]: 1.0}  # "a" is outside the window
    assert index["d"] not in model.pairs[index["a"]]


def test_score_is_cooccurrence_normalised_by_both_counts():
    model = CoVisitation(window=5, recent=5)
    _visit(model, "u1", "a", "b")
    _visit(model, "u2", "a", "b")
    _visit(model, "u3", "b", "c")
    _visit(model, "v", "a")
    scores = dict(model.recommend("v", k=5, exclude={"a"}))
    # C[a, b] = 2, n_a = 3 (u1, u2, v), n_b = 3; c never met a: no evidence, not ranked.
    assert scores == {"b": pytest.approx(2 / math.sqrt(3 * 3))}


def test_repeat_visits_count_once_and_move_the_item_last():
    # (A repeat older than the kept history counts as a new visit: memory is bounded.)
    model = CoVisitation(window=2, recent=2)
    _visit(model, "u", "a", "b", "a")
    assert model.counts[model.items.index["a"]] == 1.0
    assert model.history["u"] == [model.items.index["b"], model.items.index["a"]]


def test_rows_stay_bounded_by_pruning_the_least_covisited():
    model = CoVisitation(window=50, recent=5, max_neighbours=3)
    for user in range(4):  # "hub" is co-visited with "x0" by every user
        _visit(model, f"u{user}", "x0", "hub")
    _visit(model, "w", *[f"y{n}" for n in range(10)], "hub")
    row = model.pairs[model.items.index["hub"]]
    assert len(row) <= 2 * 3
    assert model.items.index["x0"] in row  # the most co-visited neighbour survives


def test_a_ranking_context_scores_without_learning():
    model = CoVisitation(window=5, recent=5)
    _visit(model, "u1", "a", "b")
    counts, pairs = model.counts.copy(), {k: dict(v) for k, v in model.pairs.items()}
    ranked = model.recommend_context(["a", "a", "unknown"], k=3, exclude={"a"})
    assert [item for item, _ in ranked] == ["b"]
    assert (model.counts == counts).all() and model.pairs == pairs
    assert not model.knows_user("v") and model.recommend("v", k=3) == []
    model.forget_user("u1")
    assert not model.knows_user("u1")


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError):
        CoVisitation(window=0)

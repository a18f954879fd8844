"""OnlineUserEmbeddings: micro-batching, admission and TTL, state hand-over, adoption."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from unit.learner_checks import toy_stream

from streamrec.online_models.embeddings import OnlineUserEmbeddings
from streamrec.events import ClickEvent


def click(user: str, item: str, ts: float) -> ClickEvent:
    return ClickEvent(event_id=f"{user}-{item}-{ts}", user_id=user, item_id=item, type="click",
                      ts=ts)


def prequential_hits(model: OnlineUserEmbeddings, events: list[ClickEvent], batch: int) -> float:
    hits = n = 0
    for start in range(0, len(events), batch):
        chunk = events[start:start + batch]
        for event in chunk:
            hits += event.item_id in {i for i, _ in model.recommend(event.user_id, 5)}
            n += 1
        if batch == 1:
            model.learn_one(chunk[0])
        else:
            model.learn_many(chunk)
    return hits / n


def test_learn_many_learns_as_well_as_learn_one():
    events = toy_stream(3000)
    one = prequential_hits(OnlineUserEmbeddings(dim=16, seed=1), events, 1)
    many = prequential_hits(OnlineUserEmbeddings(dim=16, seed=1), events, 64)
    assert many > 0.8 * one > 0


def test_learn_many_keeps_per_user_order():
    # One user's two events in one batch land in two rounds: the second sees the first.
    model = OnlineUserEmbeddings(dim=4, n_negatives=1, seed=0)
    model.learn_many([click("u", "a", 0.0), click("v", "b", 0.0), click("u", "c", 1.0)])
    assert model.n_users == 2 and model.n_items == 3
    assert model.user_vector("u") != model.user_vector("v")


def test_new_item_is_recommendable_at_once():
    model = OnlineUserEmbeddings(dim=8, seed=0)
    for n, event in enumerate(toy_stream(300)):
        model.learn_one(event)
    model.learn_one(click("u1", "brand-new", 1e9))
    assert "brand-new" in {item for item, _ in model.recommend("u2", 1000)}


def test_admission_threshold_and_ttl_eviction_counters():
    model = OnlineUserEmbeddings(dim=4, admission_threshold=2, ttl_s=100.0, seed=0)
    model.learn_one(click("u", "once", 0.0))
    assert model.n_items == 0 and model.rejected_admission == 2  # user and item both pending
    model.learn_one(click("u", "once", 1.0))
    assert model.n_items == 1 and model.n_users == 1 and model.admitted == 2
    for ts in range(2, 400, 10):  # another user/item keeps event time moving
        model.learn_one(click("w", "busy", float(ts)))
    assert "once" not in {item for item, _ in model.recommend("w", 10)}
    assert model.user_vector("u") is None
    assert model.evicted == 2 and model.n_items == 1 and model.n_users == 1


def test_evicted_slots_are_reused():
    model = OnlineUserEmbeddings(dim=4, ttl_s=10.0, seed=0)
    for n in range(200):
        model.learn_one(click(f"u{n}", f"i{n}", float(n)))
    assert model.n_items <= 15 and model._items.high <= 20


def test_user_vector_round_trip_restores_rankings():
    model = OnlineUserEmbeddings(dim=8, seed=0)
    for event in toy_stream(500):
        model.learn_one(event)
    vector = model.user_vector("u1")
    assert isinstance(vector, list) and len(vector) == 8
    restored = pickle.loads(pickle.dumps(model))
    restored.set_user_vector("u1", [0.0] * 8)
    restored.set_user_vector("u1", vector)
    assert restored.recommend("u1", 5) == model.recommend("u1", 5)
    with pytest.raises(ValueError):
        restored.set_user_vector("u1", [0.0] * 3)


def test_adopt_item_table_keeps_user_preferences():
    model = OnlineUserEmbeddings(dim=8, seed=0)
    for event in toy_stream(3000):
        model.learn_one(event)
    before = [item for item, _ in model.recommend("u1", 5)]
    items = [f"i{n}" for n in range(40) if n != 7] + ["deep-only"]
    # A "deep model" whose table is a random linear map of ours (plus one item we lack).
    rng = np.random.default_rng(0)
    mapping = rng.normal(size=(8, 12))
    ours = np.array([model._items.vectors[model._items.index[i]] for i in items[:-1]])
    table = np.vstack([ours @ mapping, rng.normal(size=(1, 12))])
    report = model.adopt_item_table(items, table)
    assert report == {"adopted": 39, "added": 1, "kept": 1, "users_projected": model.n_users}
    assert model.current_dim == 12
    after = [item for item, _ in model.recommend("u1", 5)]
    assert len(set(before) & set(after)) >= 4
    assert "i7" in {item for item, _ in model.recommend("u1", 100)}  # ours-only item kept
    model.learn_one(click("u1", "deep-only", 1e10))  # learning goes on in the new space


def test_adopt_item_table_with_too_little_overlap_restarts_in_the_new_space():
    model = OnlineUserEmbeddings(dim=8, seed=0)
    for event in toy_stream(500):
        model.learn_one(event)
    deep = [f"d{n}" for n in range(30)] + ["i1", "i2"]  # 2 shared items: no map can be fitted
    table = np.random.default_rng(1).normal(size=(len(deep), 6))
    report = model.adopt_item_table(deep, table)
    assert report["adopted"] == 2 and report["users_projected"] == 0
    assert model.current_dim == 6
    assert all(v == 0.0 for v in model.user_vector("u1"))  # nothing to carry users over by
    np.testing.assert_allclose(model._items.vectors[model._items.index["d3"]], table[3],
                               rtol=1e-6)
    assert "i5" in {item for item, _ in model.recommend("u1", 100)}  # ours-only items stay


def test_adopt_item_table_is_deterministic_and_pickles():
    def adopted() -> OnlineUserEmbeddings:
        model = OnlineUserEmbeddings(dim=8, seed=3)
        for event in toy_stream(800):
            model.learn_one(event)
        items = [f"i{n}" for n in range(40)]
        model.adopt_item_table(items, np.random.default_rng(2).normal(size=(40, 5)))
        return model

    first, second = adopted(), adopted()
    assert first.user_vector("u3") == second.user_vector("u3")
    copy = pickle.loads(pickle.dumps(first))
    assert copy.current_dim == 5 and copy.recommend("u3", 5) == first.recommend("u3", 5)
    copy.learn_one(click("u3", "i9", 1e9))  # learning goes on after a round trip
    with pytest.raises(ValueError):
        first.adopt_item_table(["i1", "i2"], np.zeros((3, 5)))  # one row per id
    with pytest.raises(ValueError):
        first.set_user_vector("u3", [0.0] * 8)  # the old size no longer fits

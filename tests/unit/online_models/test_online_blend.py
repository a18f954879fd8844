"""FMRecommender and OnlineBlend: chunked learning, its rows, ranking a user as user-state has them."""

from __future__ import annotations

import pickle

import msgspec
import numpy as np
import pytest
from unit.learner_checks import toy_stream

from streamrec.online_models.blend import FMRecommender, OnlineBlend
from streamrec.events import ClickEvent


def click(user: str, item: str, ts: float) -> ClickEvent:
    return ClickEvent(event_id=f"{user}-{item}-{ts}", user_id=user, item_id=item, type="click",
                      ts=ts)


def learn_in_chunks(model, events: list[ClickEvent], chunk: int):
    for start in range(0, len(events), chunk):
        model.learn_many(events[start:start + chunk])
    return model


def frozen_hits(model, events: list[ClickEvent], k: int = 5) -> float:
    """HR@k of a frozen model that only gets each user's history, as the scorer does."""
    history: dict[str, list[str]] = {}
    hits = 0
    for event in events:
        recent = history.get(event.user_id)  # None: the model's own, until the user clicks
        if isinstance(model, FMRecommender):
            ranked = model.recommend(event.user_id, k, recent_items=recent)
        else:
            ranked = model.recommend_explained_for(event.user_id, None, recent, k)
        hits += event.item_id in {entry[0] for entry in ranked}
        history.setdefault(event.user_id, []).append(event.item_id)
    return hits / len(events)


def test_fm_learn_many_builds_every_row_in_order_with_history_as_of_its_event():
    model = FMRecommender(n_factors=4, n_negatives=2, history=2, seed=5)
    events = [click("u", "a", 0.0), click("v", "b", 1.0), click("u", "c", 2.0),
              click("u", "a", 3.0), click("u", "d", 4.0)]
    captured = []
    model.fm.learn_encoded = lambda rows, values, y: captured.append((rows, values, y))
    model.learn_many(events)
    (rows, values, y), = captured
    names = {row: key for key, row in model.fm._index.items()}
    decoded = [{names[r]: float(x) for r, x in zip(row, value) if r}
               for row, value in zip(rows.tolist(), values.tolist())]
    # The reference: the same uniforms, scaled by the items known at each event.
    uniforms = np.random.default_rng(5).random((len(events), 2))
    known, order, expected, labels = [], [], [], []
    history: dict[str, list[str]] = {}
    for event, draws in zip(events, uniforms):
        if event.item_id not in order:
            order.append(event.item_id)
        recent = history.setdefault(event.user_id, [])
        user_side = {("user", event.user_id): 1.0,
                     **{f"hist_{i}": 1.0 / len(recent) for i in recent}}
        negatives = [order[int(u * len(order))] for u in draws]
        for item, label in [(event.item_id, 1.0)] + [(n, 0.0) for n in negatives
                                                     if n != event.item_id]:
            expected.append({**user_side, ("item", item): 1.0})
            labels.append(label)
        if event.item_id in recent:
            recent.remove(event.item_id)
        recent.append(event.item_id)
        del recent[:-2]
    assert decoded == expected
    assert y.tolist() == labels
    assert model._recent == {"u": ["a", "d"], "v": ["b"]}


def test_fm_learn_one_is_learn_many_of_one():
    events = toy_stream(300)
    one, many = FMRecommender(n_factors=4, seed=2), FMRecommender(n_factors=4, seed=2)
    for event in events:
        one.learn_one(event)
        many.learn_many([event])
    assert pickle.dumps(one) == pickle.dumps(many)


@pytest.mark.parametrize("factory", [lambda: FMRecommender(n_factors=8, seed=4),
                                     lambda: OnlineBlend(seed=4)])
def test_learn_many_is_deterministic_for_the_same_chunking(factory):
    events = toy_stream(700)
    a, b = learn_in_chunks(factory(), events, 128), learn_in_chunks(factory(), events, 128)
    assert pickle.dumps(a) == pickle.dumps(b)
    assert a.recommend("u1", 10) == b.recommend("u1", 10)


@pytest.mark.parametrize("factory", [lambda: FMRecommender(n_factors=8, seed=1),
                                     lambda: OnlineBlend(seed=1)])
def test_chunked_learning_learns_about_as_well_as_per_event(factory):
    # Judged on a frozen model fed fresh histories: recommending from a model up to a chunk
    # stale is the scorer's business (recommend_explained_for), not the learner's. Chunks of 32:
    # in 2,400 events, chunks of 128 leave the FM only 19 steps (ML-100K has 781; see
    # benchmarks/online_learning.py --quality for chunks of 128 there).
    events = toy_stream(3000)
    one, chunked = factory(), learn_in_chunks(factory(), events[:2400], 32)
    for event in events[:2400]:
        one.learn_one(event)
    assert frozen_hits(chunked, events[2400:]) > 0.8 * frozen_hits(one, events[2400:]) > 0


def test_blend_learn_one_is_learn_many_of_one():
    events = toy_stream(200)
    one, many = OnlineBlend(seed=2), OnlineBlend(seed=2)
    for event in events:
        one.learn_one(event)
    for event in events:
        many.learn_many([event])
    assert pickle.dumps(one) == pickle.dumps(many)


def written_then_ranked(blend: OnlineBlend, user: str, vector, recent: list[str], k: int,
                        exclude=()) -> list:
    """The reference: what the scorer did before, on a copy: write the user's vector and FM
    history into the snapshot, then rank it."""
    copy = OnlineBlend.from_state(blend.to_state())
    if vector is not None:
        copy.embeddings.set_user_vector(user, vector)
    history = copy.fm.history_of(recent)
    if history:
        copy.fm._recent[user] = history
    else:
        copy.fm._recent.pop(user, None)
    return copy.recommend_explained(user, k, exclude)


@pytest.mark.parametrize("user,fresh,recent", [
    ("u1", True, ["i3", "i1", "i3", "i2", "unknown-item"]),  # oldest first, repeats allowed
    ("u2", False, ["i1"]),        # no vector: the snapshot's own embedding
    ("u2", True, []),             # no recent items: no FM history
    ("new-user", True, ["i1", "i2"]),
    ("never-seen", False, ["i4"]),
])
def test_ranking_a_fresher_state_matches_writing_it_in_and_writes_nothing(user, fresh, recent):
    source = learn_in_chunks(OnlineBlend(seed=0), toy_stream(1500), 128)
    snapshot = learn_in_chunks(OnlineBlend(seed=0), toy_stream(1500)[:1000], 128)
    vector = (source.user_vector(user) or [0.5] * source.embeddings.current_dim) if fresh else None
    assert vector is None or vector != snapshot.user_vector(user)  # the state is fresher
    before = msgspec.msgpack.encode(snapshot.to_state())
    for k, exclude in ((10, ()), (3, {"i1", "i2", "i3"})):
        expected = written_then_ranked(snapshot, user, vector, recent, k, exclude)
        assert expected and snapshot.recommend_explained_for(user, vector, recent, k,
                                                             exclude) == expected
    # Nothing was written: not the vector, not the history, no FM feature for unknown items.
    assert msgspec.msgpack.encode(snapshot.to_state()) == before


def test_a_fresher_state_changes_the_ranking():
    """The fresher vector and history are really used (the check above cannot pass idly)."""
    source = learn_in_chunks(OnlineBlend(seed=0), toy_stream(1500), 128)
    snapshot = learn_in_chunks(OnlineBlend(seed=0), toy_stream(1500)[:1000], 128)
    recent = [e.item_id for e in toy_stream(1500)[1000:] if e.user_id == "u1"]
    fresh = snapshot.recommend_explained_for("u1", source.user_vector("u1"), recent, 10)
    assert fresh != snapshot.recommend_explained("u1", 10)
    assert snapshot.recommend_explained_for("u1", None, None, 10) == \
        snapshot.recommend_explained("u1", 10)


def test_a_vector_of_another_size_is_refused():
    blend = learn_in_chunks(OnlineBlend(seed=0), toy_stream(500), 128)
    with pytest.raises(ValueError):
        blend.recommend_explained_for("u2", [0.0, 1.0], [], 10)


def test_history_is_capped_to_the_latest_distinct_items():
    model = FMRecommender(history=3, seed=0)
    assert model.history_of(["a", "b", "c", "b", "d", "e", "d"]) == ["b", "e", "d"]
    assert model.history_of([]) == []

"""One check-suite for every ``Recommender``: the house rules, as reusable test helpers.

Each check takes a zero-argument factory that builds a fresh, identically configured
learner (fix its seed inside the factory). Use it from any test module:

    from learner_checks import learner_check_params   # tests/unit/*
    # or: from unit.learner_checks import ...          # deeper folders (pythonpath=tests)

    @pytest.mark.parametrize("check,factory", learner_check_params({"mine": MyLearner}))
    def test_learner_checks(check, factory):
        check(factory)

Checks: the protocol contract (≤ k items, best first, never an excluded item), pickle
round-trips before and after learning, determinism, ``recommend`` never mutating state
(pickle bytes identical, also for unknown users), and learning a toy stream better than
chance.
"""

from __future__ import annotations

import pickle
from typing import Callable, Mapping

import numpy as np
import pytest

from streamrec.online_models.base import Recommender
from streamrec.events import ClickEvent

Factory = Callable[[], Recommender]


def toy_stream(n_events: int = 3000, seed: int = 7) -> list[ClickEvent]:
    """A stream with structure any reasonable learner can pick up.

    Four groups of ten items; a user stays in one group and mostly walks to the next item
    of the group's cycle, sometimes jumps within the group. Group 0 has most users, so
    popularity carries signal too.
    """
    rng = np.random.default_rng(seed)
    n_users = 120
    groups = rng.choice(4, size=n_users, p=[0.55, 0.2, 0.15, 0.1])
    position = rng.integers(10, size=n_users)
    events = []
    for n in range(n_events):
        user = int(rng.integers(n_users))
        step = 1 if rng.random() < 0.7 else int(rng.integers(1, 10))
        position[user] = (position[user] + step) % 10
        item = f"i{groups[user] * 10 + position[user]}"
        events.append(ClickEvent(event_id=f"e{n}", user_id=f"u{user}", item_id=item,
                                 type="click", ts=1_000_000.0 + 60.0 * n))
    return events


def _learn(model: Recommender, events: list[ClickEvent]) -> Recommender:
    for event in events:
        model.learn_one(event)
    return model


def _probe(model: Recommender) -> list[list[tuple[str, float]]]:
    """Recommendations for a few known users, one unknown user, and with exclusions."""
    users = ["u0", "u1", "u2", "u3", "nobody-ever-seen"]
    return ([model.recommend(u, 5) for u in users]
            + [model.recommend("u0", 5, exclude={"i0", "i1", "i2"})])


def check_recommend_contract(factory: Factory) -> None:
    model = _learn(factory(), toy_stream(500))
    assert isinstance(model, Recommender)
    for k in (1, 3, 10):
        exclude = {"i0", "i1", "i5", "i10"}
        ranking = model.recommend("u1", k, exclude=exclude)
        assert len(ranking) <= k
        assert not exclude & {item for item, _ in ranking}
        scores = [score for _, score in ranking]
        assert scores == sorted(scores, reverse=True)
        assert len({item for item, _ in ranking}) == len(ranking)
    assert factory().recommend("u1", 5) == []  # nothing learned, nothing to recommend


def learned_state(value: object) -> object:
    """Everything a learner holds, as plain comparable values (arrays by bytes, RNGs by state).

    For "bit-identical" assertions across runs: pickle bytes are no equality, since a
    restored learner shares string objects differently from one that never left memory.
    """
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, np.random.Generator):
        return learned_state(value.bit_generator.state)
    if isinstance(value, dict):
        return {k: learned_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [learned_state(v) for v in value]
    if hasattr(value, "__dict__"):
        return (type(value).__name__, learned_state(vars(value)))
    return value


def check_pickle_round_trip(factory: Factory) -> None:
    events = toy_stream(600)
    fresh = factory()
    restored_fresh = pickle.loads(pickle.dumps(fresh))
    assert _probe(_learn(restored_fresh, events)) == _probe(_learn(fresh, events))
    trained = _learn(factory(), events[:300])
    restored = pickle.loads(pickle.dumps(trained))
    assert _probe(restored) == _probe(trained)
    _learn(trained, events[300:])
    _learn(restored, events[300:])
    assert _probe(restored) == _probe(trained)


def check_deterministic(factory: Factory) -> None:
    events = toy_stream(600)
    assert _probe(_learn(factory(), events)) == _probe(_learn(factory(), events))


def check_recommend_does_not_mutate(factory: Factory) -> None:
    for model in (factory(), _learn(factory(), toy_stream(400))):
        before = pickle.dumps(model)
        _probe(model)
        model.recommend("brand-new-user", 10, exclude={"never-seen-item"})
        assert pickle.dumps(model) == before, "recommend changed the learner's state"


def check_learns_toy_stream(factory: Factory, k: int = 5, margin: float = 1.5) -> None:
    """Prequential HR@k on the toy stream beats ``margin`` × random guessing."""
    model = factory()
    seen: dict[str, set[str]] = {}
    catalog: set[str] = set()
    hits, chance, n = 0.0, 0.0, 0
    for event in toy_stream():
        user_seen = seen.setdefault(event.user_id, set())
        if user_seen and event.item_id not in user_seen:
            ranking = model.recommend(event.user_id, k, exclude=user_seen)
            hits += event.item_id in {item for item, _ in ranking}
            candidates = len(catalog - user_seen)
            chance += min(1.0, k / candidates) if candidates else 0.0
            n += 1
        model.learn_one(event)
        user_seen.add(event.item_id)
        catalog.add(event.item_id)
    assert n > 100
    assert hits / n > margin * chance / n, f"HR@{k} {hits / n:.3f} vs chance {chance / n:.3f}"


ALL_CHECKS = (check_recommend_contract, check_pickle_round_trip, check_deterministic,
              check_recommend_does_not_mutate, check_learns_toy_stream)


def learner_check_params(factories: Mapping[str, Factory]) -> list:
    """``pytest.param(check, factory)`` for every check × learner, with readable ids."""
    return [pytest.param(check, factory, id=f"{name}-{check.__name__.removeprefix('check_')}")
            for name, factory in factories.items() for check in ALL_CHECKS]

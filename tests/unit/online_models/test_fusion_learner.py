"""Learned fusion: the shared check-suite, the update's direction, and adaptation to drift."""

from __future__ import annotations

from typing import Collection

import numpy as np
import pytest
from unit.learner_checks import learner_check_params

from streamrec.events import ClickEvent
from streamrec.online_models.base import Ranking
from streamrec.online_models.baselines import ItemKNN, MarkovChain, MostPopular, RecentPopular
from streamrec.online_models.fusion_learner import (FusedRecommender, PairwiseFusion,
                                                    project_to_simplex, rank_features)
from streamrec.online_models.item_side import ItemSideTable
from streamrec.online_models.user_state import UserState


class ItemSideSource:
    """The scorer's item-side sources (transitions or co-visitation) as a ``Recommender``:
    each user's state as ingest keeps it, applied to an ``ItemSideTable`` per event."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.table = ItemSideTable(window=20, recent=10, transition_order=2)
        self.states: dict[str, UserState] = {}
        self.offset = 0

    def learn_one(self, event: ClickEvent) -> None:
        state = self.states.setdefault(event.user_id, UserState(user_id=event.user_id))
        state.new_events = []
        state.apply(event.item_id, ts=event.ts, event_id=event.event_id,
                    event_type=event.type, offset=self.offset, partition=0)
        self.table.apply(0, self.offset, state)
        self.offset += 1

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        state = self.states.get(user_id)
        if state is None:
            return []
        excluded = set(exclude) | set(state.seen_items)
        if self.kind == "transitions":
            return self.table.recommend_transitions(state.recent_items, k, excluded)
        return self.table.recommend_context(state.recent_items, k, excluded)


def _fused(*, learning_rate: float = 0.05) -> FusedRecommender:
    return FusedRecommender({"popular": MostPopular(), "item-knn": ItemKNN(),
                             "markov": MarkovChain()},
                            PairwiseFusion([1.0, 1.0, 1.0], learning_rate=learning_rate),
                            depth=20)


FACTORIES = {
    "learned-fusion": _fused,
    "learned-fusion-frozen": lambda: _fused(learning_rate=0.0),
    "transitions": lambda: ItemSideSource("transitions"),
    "covisitation": lambda: ItemSideSource("covisitation"),
}


@pytest.mark.parametrize("check,factory", learner_check_params(FACTORIES))
def test_learner_checks(check, factory):
    check(factory)


def test_rank_features_scale_rank_one_to_one_and_unlisted_to_zero():
    features = rank_features(np.array([[1, 0, 2]]), rrf_k=10.0)
    assert features.tolist() == [[1.0, 0.0, 11.0 / 12.0]]


@pytest.mark.parametrize("values,total", [([0.2, 0.5, 3.0], 3.0), ([-1.0, 0.5, 0.6], 1.0),
                                          ([1.0, 1.0, 1.0], 3.0), ([5.0, -5.0], 2.0)])
def test_projection_is_on_the_simplex_and_closest(values, total):
    projected = project_to_simplex(np.array(values), total)
    assert projected.min() >= 0 and projected.sum() == pytest.approx(total)
    rng = np.random.default_rng(0)
    for _ in range(200):  # no other point of the simplex is closer
        other = rng.dirichlet(np.ones(len(values))) * total
        assert (np.linalg.norm(other - values)
                >= np.linalg.norm(projected - values) - 1e-12)


def test_a_click_moves_weight_to_the_source_that_ranked_it():
    fusion = PairwiseFusion([1.0, 1.0, 1.0], learning_rate=0.05)
    # Source 2 ranked the clicked item 1st; the shown items came from sources 0 and 1.
    assert fusion.learn_one(clicked=[0, 0, 1], shown=[[1, 2, 0], [2, 1, 0], [3, 0, 0]])
    assert fusion.weights[2] > 1.0 > max(fusion.weights[0], fusion.weights[1])
    assert fusion.weights.sum() == pytest.approx(3.0)
    assert fusion.updates == 1


def test_nothing_is_learned_from_an_unlisted_click_or_without_shown_items():
    fusion = PairwiseFusion([0.5, 1.5], learning_rate=0.1)
    assert not fusion.learn_one(clicked=[0, 0], shown=[[1, 2]])
    assert not fusion.learn_one(clicked=[1, 0], shown=[])
    assert fusion.weights.tolist() == [0.5, 1.5] and fusion.updates == 0


def test_frozen_learner_keeps_the_fixed_weights():
    fusion = PairwiseFusion([0.5, 0.5, 1.5, 0.5], learning_rate=0.0)
    assert not fusion.learn_one(clicked=[1, 0, 0, 0], shown=[[0, 1, 1, 1]])
    assert fusion.weights.tolist() == [0.5, 0.5, 1.5, 0.5]


@pytest.mark.parametrize("initial,learning_rate", [([-1.0, 1.0], 0.1), ([0.0, 0.0], 0.1),
                                                   ([], 0.1), ([1.0, float("nan")], 0.1),
                                                   ([1.0, 1.0], -0.5)])
def test_bad_hyper_parameters_are_refused(initial, learning_rate):
    with pytest.raises(ValueError):
        PairwiseFusion(initial, learning_rate=learning_rate)


def test_restored_weights_are_projected_and_checked():
    fusion = PairwiseFusion([1.0, 1.0])
    fusion.set_weights([3.0, 1.0], updates=7)
    assert fusion.weights.tolist() == [2.0, 0.0] and fusion.updates == 7
    with pytest.raises(ValueError):
        fusion.set_weights([1.0, float("inf")], updates=1)
    with pytest.raises(ValueError):
        fusion.set_weights([1.0, 1.0, 1.0], updates=1)


def drifting_stream(n_events: int, switch_at: int, seed: int = 11) -> list[ClickEvent]:
    """Users walk a cycle of items (the last item predicts the next: transitions win) until
    ``switch_at``; then tastes drift to a new catalogue, clicked by a skewed popularity
    whatever came before (recent popularity wins: prequential HR@10 0.36 against the
    transitions' 0.25 there, 0.26 against 0.99 before)."""
    rng = np.random.default_rng(seed)
    n_users, n_items, n_fresh = 200, 60, 300
    position = rng.integers(n_items, size=n_users)
    popularity = 1.0 / np.arange(1, n_fresh + 1) ** 1.1
    popularity /= popularity.sum()
    events = []
    for n in range(n_events):
        user = int(rng.integers(n_users))
        if n < switch_at:
            position[user] = (position[user] + 1) % n_items
            item = f"i{position[user]}"
        else:
            item = f"new{int(rng.choice(n_fresh, p=popularity))}"
        events.append(ClickEvent(event_id=f"e{n}", user_id=f"u{user}", item_id=item,
                                 type="click", ts=1_000_000.0 + 60.0 * n))
    return events


def test_the_weights_move_to_the_source_that_predicts_after_a_drift():
    """The weight trajectory on a stream whose best source changes half-way: transitions
    win the first half, recent popularity the second; the learner follows within a
    thousand events of the change."""
    model = FusedRecommender({"popular": RecentPopular(half_life_s=30_000.0),
                              "transitions": MarkovChain()},
                             PairwiseFusion([1.0, 1.0], learning_rate=0.02), depth=20)
    switch_at, every = 6000, 500
    trajectory = []
    for n, event in enumerate(drifting_stream(12000, switch_at), 1):
        model.learn_one(event)
        if n % every == 0:
            trajectory.append((n, *(round(float(w), 3) for w in model.fusion.weights)))
    print("events, popular weight, transitions weight:", trajectory)
    by_n = {n: (popular, transitions) for n, popular, transitions in trajectory}
    assert by_n[switch_at][1] > 1.5, "transitions should lead before the drift"
    # Within 1,000 events of the change popularity leads, and it keeps the lead.
    for n in range(switch_at + 1000, 12001, every):
        popular, transitions = by_n[n]
        assert popular > transitions + 0.25, f"transitions still lead at event {n}"

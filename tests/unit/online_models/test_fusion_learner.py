"""Learned fusion: the shared check-suite, the update's direction, and adaptation to drift."""

from __future__ import annotations

from typing import Collection

import numpy as np
import pytest
from unit.learner_checks import learner_check_params

from streamrec.events import ClickEvent
from streamrec.online_models.base import Ranking
from streamrec.online_models.baselines import ItemKNN, MarkovChain, MostPopular, RecentPopular
from streamrec.online_models.fusion_learner import (CounterfactualFusion, FusedRecommender,
                                                    rank_features, weight_grid)
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


def _fused(*, factors: tuple[float, ...] = (0.5, 1.0, 2.0)) -> FusedRecommender:
    return FusedRecommender({"popular": MostPopular(), "item-knn": ItemKNN(),
                             "markov": MarkovChain()},
                            CounterfactualFusion([1.0, 1.0, 1.0], factors=factors,
                                                 half_life=500.0),
                            depth=20)


FACTORIES = {
    "learned-fusion": _fused,
    "learned-fusion-frozen": lambda: _fused(factors=(1.0,)),
    "transitions": lambda: ItemSideSource("transitions"),
    "covisitation": lambda: ItemSideSource("covisitation"),
}


@pytest.mark.parametrize("check,factory", learner_check_params(FACTORIES))
def test_learner_checks(check, factory):
    check(factory)


def test_rank_features_scale_rank_one_to_one_and_unlisted_to_zero():
    features = rank_features(np.array([[1, 0, 2]]), rrf_k=10.0)
    assert features.tolist() == [[1.0, 0.0, 11.0 / 12.0]]


def test_the_grid_holds_the_initial_first_at_one_sum_without_duplicates():
    grid = weight_grid([0.5, 1.5, 0.0], (0.5, 1.0, 2.0))
    assert grid[0].tolist() == [0.5, 1.5, 0.0]
    assert np.allclose(grid.sum(axis=1), 2.0)
    assert (grid[:, 2] == 0).all()  # a source that is off stays off
    normalised = {tuple(np.round(row, 9)) for row in grid}
    # 9 products of the two live sources; (0.5,0.5) ~ (1,1) ~ (2,2), (0.5,1) ~ (1,2) and
    # (1,0.5) ~ (2,1) are one vector each.
    assert len(normalised) == len(grid) == 5


def test_each_vector_earns_the_ndcg_it_would_have_had():
    fusion = CounterfactualFusion([1.0, 1.0], factors=(0.25, 1.0, 4.0), half_life=1e9, k=3)
    # The clicked item: rank 1 for source 0, unlisted by source 1. Others: source 1's
    # top two, and an item both list at rank 2.
    assert fusion.learn_one(clicked=[1, 0], others=[[0, 1], [0, 2], [2, 3]])
    by_vector = {tuple(np.round(v, 6)): g for v, g in zip(fusion.candidates, fusion.gains)}
    # Equal weights: the clicked item (11/11) is behind [0,1] (11/11, a tie counts against)
    # and [2,3] (11/12 + 11/13): third, NDCG 1/log2(4) = 0.5.
    assert by_vector[(1.0, 1.0)] == pytest.approx(0.5)
    # Source 0 at 4x (1.6, 0.4): [2,3] still leads it (1.6*11/12 + 0.4*11/13 = 1.805 >
    # 1.6): second, 1/log2(3). At 16x (32/17, 2/17) it is first: 1.0, and served.
    assert by_vector[(1.6, 0.4)] == pytest.approx(1 / np.log2(3))
    assert by_vector[(round(32 / 17, 6), round(2 / 17, 6))] == pytest.approx(1.0)
    # Source 1 at 4x: behind all three: outside k=3, 0.
    assert by_vector[(0.4, 1.6)] == 0.0
    assert fusion.weights.tolist() == pytest.approx([32 / 17, 2 / 17])
    assert fusion.updates == 1


def test_nothing_is_learned_from_an_unlisted_click():
    fusion = CounterfactualFusion([0.5, 1.5])
    assert not fusion.learn_one(clicked=[0, 0], others=[[1, 2]])
    assert fusion.updates == 0 and not fusion.gains.any()
    assert fusion.weights.tolist() == [0.5, 1.5]


def test_the_served_vector_keeps_its_place_on_a_tie():
    fusion = CounterfactualFusion([1.0, 1.0], factors=(0.5, 1.0, 2.0))
    # Every vector puts the clicked item first: all tie, the initial stays.
    fusion.learn_one(clicked=[1, 1], others=[[5, 6]])
    assert fusion.weights.tolist() == [1.0, 1.0]


def test_forgetting_lets_a_new_leader_take_over():
    fusion = CounterfactualFusion([1.0, 1.0], factors=(0.25, 1.0, 4.0), half_life=10.0, k=1)
    for _ in range(50):  # source 0 right
        fusion.learn_one(clicked=[1, 3], others=[[2, 1]])
    assert fusion.weights[0] > fusion.weights[1]
    switched = None
    for n in range(1, 200):  # then source 1 right
        fusion.learn_one(clicked=[3, 1], others=[[1, 2]])
        if fusion.weights[1] > fusion.weights[0]:
            switched = n
            break
    assert switched is not None and switched <= 20


@pytest.mark.parametrize("initial,kwargs", [([-1.0, 1.0], {}), ([0.0, 0.0], {}), ([], {}),
                                            ([1.0, float("nan")], {}),
                                            ([1.0, 1.0], {"half_life": 0.0}),
                                            ([1.0, 1.0], {"factors": ()}),
                                            ([1.0, 1.0], {"factors": (1.0, -2.0)}),
                                            ([1.0, 1.0], {"k": 0})])
def test_bad_hyper_parameters_are_refused(initial, kwargs):
    with pytest.raises(ValueError):
        CounterfactualFusion(initial, **kwargs)


def test_a_restored_state_is_checked():
    fusion = CounterfactualFusion([1.0, 1.0])
    gains = np.arange(len(fusion.gains), dtype=float)
    fusion.set_state(gains.tolist(), best=3, updates=7)
    assert fusion.weights.tolist() == fusion.candidates[3].tolist() and fusion.updates == 7
    for bad in (dict(gains=[1.0], best=0), dict(gains=[float("inf")] * len(gains), best=0),
                dict(gains=gains.tolist(), best=len(gains))):
        with pytest.raises(ValueError):
            fusion.set_state(bad["gains"], best=bad["best"], updates=1)


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
    win the first half, recent popularity the second; the learner follows within
    3,000 events of the change (a click counts half after 250 more)."""
    model = FusedRecommender({"popular": RecentPopular(half_life_s=30_000.0),
                              "transitions": MarkovChain()},
                             CounterfactualFusion([1.0, 1.0], factors=(0.25, 1.0, 4.0),
                                                  half_life=250.0), depth=20)
    switch_at, every = 6000, 500
    trajectory = []
    for n, event in enumerate(drifting_stream(12000, switch_at), 1):
        model.learn_one(event)
        if n % every == 0:
            trajectory.append((n, *(round(float(w), 3) for w in model.fusion.weights)))
    print("events, popular weight, transitions weight:", trajectory)
    by_n = {n: (popular, transitions) for n, popular, transitions in trajectory}
    assert by_n[switch_at][1] > 1.5, "transitions should lead before the drift"
    # Within 3,000 events of the change popularity leads, and it keeps the lead.
    for n in range(switch_at + 3000, 12001, every):
        popular, transitions = by_n[n]
        assert popular > transitions, f"transitions still lead at event {n}"

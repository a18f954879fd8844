"""ItemSideTable: an exact aggregate over the latest user states.

Every count is checked against a brute-force reference computed from the latest states
alone (``expected``), so the incremental path, the full recomputation and the rebases are
all held to the definition, not to each other. The property test (hypothesis) holds any
arrival order and any duplicate to the same counts; its size follows
``STREAMREC_PROPERTY_EXAMPLES`` like the other property suites (default 10,000 histories
in all; CI sets fewer).
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from itertools import combinations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrec.online_models import item_side
from streamrec.online_models.item_side import ItemSideTable
from streamrec.online_models.user_state import UserState

WINDOW, HALF_LIFE = 3, 10.0
EXAMPLES = max(1, int(os.environ.get("STREAMREC_PROPERTY_EXAMPLES", "10000")) // 50)


def histories(rng: random.Random, users: int = 12, events: int = 40, items: int = 15,
              recent_limit: int = 5, seen_limit: int = 8) -> dict[str, list[UserState]]:
    """Every state each user passed through (as ingest writes them, caps reached)."""
    out: dict[str, list[UserState]] = {}
    ts = 0.0
    for n in range(events * users):
        user = f"u{rng.randrange(users)}"
        ts += rng.expovariate(1 / 3.0)
        states = out.setdefault(user, [UserState(user_id=user)])
        state = UserState(**{f: getattr(states[-1], f) for f in states[-1].__struct_fields__})
        state.recent_items, state.recent_ts = list(state.recent_items), list(state.recent_ts)
        state.seen_items = list(state.seen_items)
        state.apply(f"i{rng.randrange(items)}", ts=ts, event_id=str(n), event_type="click",
                    offset=n, recent_limit=recent_limit, seen_limit=seen_limit)
        states.append(state)
    return {user: states[1:] for user, states in out.items()}


ORDER = 2  # transition gaps the tables count (the default)


def expected_transitions(states: list[UserState], gap: int) -> dict[tuple[str, str], int]:
    """The definition: users with j exactly ``gap`` positions after i in seen_items."""
    transitions: Counter[tuple[str, str]] = Counter()
    for state in states:
        seen = state.seen_items
        transitions.update(zip(seen, seen[gap:]))
    return dict(transitions)


def expected(states: list[UserState], reference_ts: float):
    """The definition: counts, pairs and decayed weights of a set of latest states."""
    counts: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    decayed: dict[str, float] = {}
    for state in states:
        counts.update(state.seen_items)
        for a, b in combinations(range(len(state.seen_items)), 2):
            if b - a <= WINDOW:
                x, y = state.seen_items[a], state.seen_items[b]
                pairs[(min(x, y), max(x, y))] += 1
        for item, ts in zip(state.recent_items, state.recent_ts):
            decayed[item] = decayed.get(item, 0.0) + 2.0 ** ((ts - reference_ts) / HALF_LIFE)
    return dict(counts), dict(pairs), decayed


def assert_matches(table: ItemSideTable, states: list[UserState]) -> None:
    reference_ts = max((ts for s in states for ts in s.recent_ts), default=0.0)
    counts, pairs, decayed = expected(states, reference_ts)
    assert table.item_counts() == counts
    assert table.pair_counts() == pairs
    for gap in range(1, ORDER + 1):
        assert table.transition_counts(gap) == expected_transitions(states, gap)
    got = table.decayed_weights(reference_ts)
    assert got.keys() == decayed.keys()
    for item, weight in decayed.items():
        assert got[item] == pytest.approx(weight, rel=1e-9)


def snapshot(table: ItemSideTable) -> tuple:
    """Everything a table holds that a ranking can see, exactly."""
    return (table.item_counts(), table.pair_counts(), table.reference_ts,
            table.decayed_weights(), len(table),
            *(table.transition_counts(gap) for gap in range(1, ORDER + 1)))


def table() -> ItemSideTable:
    return ItemSideTable(window=WINDOW, recent=4, half_life_s=HALF_LIFE, reference_step_s=20.0)


def test_incremental_updates_equal_the_definition_and_a_table_built_from_scratch() -> None:
    history = histories(random.Random(1))
    incremental = table()
    for offset, (user, state) in enumerate(
            sorted(((u, s) for u, states in history.items() for s in states),
                   key=lambda us: us[1].source_offset)):
        assert incremental.apply(0, state.source_offset, state)
    latest = [states[-1] for states in history.values()]
    assert_matches(incremental, latest)
    scratch = table()
    for state in latest:
        scratch.apply(0, state.source_offset, state)
    assert snapshot(incremental) == snapshot(scratch)
    assert len(incremental.pair_counts()) > 20  # the caps were reached, pairs are many


def test_the_common_update_touches_only_the_appended_and_dropped_positions() -> None:
    t = table()
    seen = [f"i{n}" for n in range(8)]
    t.apply(0, 0, UserState(user_id="u", seen_items=seen))
    calls = []
    # Pairs move through _move_pairs (one item's pairs at once): one +-1 per pair.
    original = t._move_pairs
    t._move_pairs = lambda i, others, d: (  # type: ignore[method-assign]
        calls.extend([d] * len(others)), original(i, others, d))
    # At the cap: the oldest falls off, one is appended.
    t.apply(0, 1, UserState(user_id="u", seen_items=seen[1:] + ["new"]))
    assert calls.count(-1) == WINDOW and calls.count(1) == WINDOW
    assert_matches(t, [UserState(user_id="u", seen_items=seen[1:] + ["new"])])


def test_apply_is_idempotent_and_ordered_by_offset_within_a_partition() -> None:
    t = table()
    new = UserState(user_id="u", seen_items=["a", "b"], recent_items=["b"], recent_ts=[5.0])
    old = UserState(user_id="u", seen_items=["a"])
    assert t.apply(0, 7, new)
    before = snapshot(t)
    assert not t.apply(0, 7, new) and not t.apply(0, 3, old)
    assert snapshot(t) == before


def test_forget_removes_the_users_influence_and_the_reference_follows_the_held_events() -> None:
    t = table()
    t.apply(0, 0, UserState(user_id="early", seen_items=["a", "b"], recent_items=["a", "b"],
                            recent_ts=[1.0, 2.0]))
    t.apply(1, 0, UserState(user_id="late", seen_items=["b", "c"], recent_items=["c"],
                            recent_ts=[95.0]))
    assert t.reference_ts == 100.0
    t.forget("late")
    assert "late" not in t.users_of(1)
    fresh = table()
    fresh.apply(0, 0, UserState(user_id="early", seen_items=["a", "b"],
                                recent_items=["a", "b"], recent_ts=[1.0, 2.0]))
    # The reference went back down with the latest event: the same table as never seeing it.
    assert snapshot(t) == snapshot(fresh) and t.reference_ts == 20.0
    t.forget("early")
    assert snapshot(t) == ({}, {}, None, {}, 0, {}, {})


def test_replace_partition_holds_exactly_the_given_states() -> None:
    t = table()
    t.apply(2, 5, UserState(user_id="gone", seen_items=["a", "b"]))
    t.apply(2, 9, UserState(user_id="ahead", seen_items=["a", "b", "c"]))
    t.apply(3, 1, UserState(user_id="other", seen_items=["c"]))
    restored = UserState(user_id="ahead", seen_items=["a"])
    t.replace_partition(2, [(4, UserState(user_id="ahead", seen_items=["z"])), (6, restored)])
    assert t.users_of(2) == {"ahead": 6}
    assert_matches(t, [restored, UserState(user_id="other", seen_items=["c"])])


def test_states_without_recent_ts_add_no_recency_and_ranking_ties_break_by_item_id() -> None:
    t = table()
    t.apply(0, 0, UserState(user_id="u", seen_items=["b", "a"], recent_items=["b", "a"]))
    assert t.decayed_weights() == {} and t.item_counts() == {"a": 1, "b": 1}
    ranked = t.recommend_explained(k=2)
    assert [item for item, _, _ in ranked] == ["a", "b"]
    assert ranked[0][2] == {"popularity": 1.0, "recency": 0.0}
    assert t.recommend_context(["c"], k=3) == []  # unknown items give no evidence
    assert [i for i, _ in t.recommend_context(["b"], k=3, exclude={"b"})] == ["a"]


def test_rankings_never_return_items_no_user_holds() -> None:
    t = table()
    t.apply(0, 0, UserState(user_id="u", seen_items=["a", "b"]))
    t.apply(0, 1, UserState(user_id="v", seen_items=["c"]))
    t.forget("u")
    assert [item for item, _, _ in t.recommend_explained(k=5)] == ["c"]


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), duplicates=st.integers(0, 60),
       forgotten=st.integers(0, 3))
def test_any_arrival_order_and_duplicates_give_the_same_counts(seed: int, duplicates: int,
                                                               forgotten: int) -> None:
    rng = random.Random(seed)
    history = histories(rng, users=6, events=12)
    # Each state at its own record offset of the user's partition (users spread over 3).
    records = [(int(user[1:]) % 3, state.source_offset, state)
               for user, states in history.items() for state in states]
    shuffled = records + rng.sample(records, min(duplicates, len(records)))
    rng.shuffle(shuffled)
    t = table()
    for partition, offset, state in shuffled:
        t.apply(partition, offset, state)
    gone = rng.sample(sorted(history), min(forgotten, len(history)))
    for user in gone:
        t.forget(user)
    latest = [states[-1] for user, states in history.items() if user not in gone]
    assert_matches(t, latest)
    in_order = table()
    for partition, offset, state in sorted(records, key=lambda r: r[1]):
        in_order.apply(partition, offset, state)
    for user in gone:
        in_order.forget(user)
    assert snapshot(t) == snapshot(in_order)
    assert t.recommend_explained(k=5) == in_order.recommend_explained(k=5)
    context = latest[0].recent_items if latest else []
    assert t.recommend_context(context, k=5) == in_order.recommend_context(context, k=5)
    assert (t.recommend_transitions(context, k=5)
            == in_order.recommend_transitions(context, k=5))
    assert all(math.isfinite(w) for w in t.decayed_weights().values())


def test_a_state_that_does_not_extend_the_held_one_is_recomputed_whole() -> None:
    # States ingest would not write (a rewritten history, a counter that lies): the shift
    # guessed from the first item or the event counter does not hold, so the table falls
    # back to subtracting everything and adding everything.
    rng = random.Random(5)
    t = table()
    latest: dict[str, UserState] = {}
    for offset in range(400):
        user = f"u{rng.randrange(4)}"
        items = rng.sample([f"i{n}" for n in range(12)], rng.randrange(0, 9))
        recent = [rng.choice(items) for _ in range(rng.randrange(0, 6))] if items else []
        state = UserState(user_id=user, seen_items=items, recent_items=recent,
                          recent_ts=[rng.uniform(0.0, 200.0) for _ in recent],
                          event_count=rng.randrange(0, 12))
        if rng.random() < 0.5 and user in latest:  # often: a prefix of the held one, shifted
            held = latest[user]
            state.seen_items = held.seen_items[1:] + held.seen_items[:1]
            state.recent_items, state.recent_ts = held.recent_items[1:], held.recent_ts[1:]
        t.apply(0, offset, state)
        latest[user] = state
        assert_matches(t, list(latest.values()))


def test_ranking_never_mutates_and_the_table_is_plain_data() -> None:
    import pickle

    t = table()
    for state in (states[-1] for states in histories(random.Random(2)).values()):
        t.apply(0, state.source_offset, state)
    before = snapshot(t)
    context = ["i1", "i2", "unknown"]
    first = t.recommend_explained(5, exclude={"i3"}), t.recommend_context(context, 5)
    assert snapshot(t) == before
    copy = pickle.loads(pickle.dumps(t))
    assert snapshot(copy) == before
    assert (copy.recommend_explained(5, exclude={"i3"}), copy.recommend_context(context, 5)) == first
    assert all(item != "i3" for item, _, _ in first[0]) and len(first[0]) == 5


def dense_context_ranking(table: ItemSideTable, recent_items: list[str], k: int,
                          exclude: set[str]) -> tuple[list[int], list[float]]:
    """``recommend_context_rows`` by its definition: of ``score_context``, the k best
    positive scores not excluded, ties by item id."""
    scores = table.score_context(recent_items)
    ids = table.ids
    ranked = sorted((i for i in range(len(ids))
                     if scores[i] > 0 and ids[i] not in exclude),
                    key=lambda i: (-scores[i], ids[i]))[:max(k, 0)]
    return ranked, [float(scores[i]) for i in ranked]


def dense_transition_ranking(table: ItemSideTable, recent_items: list[str], k: int,
                             exclude: set[str]) -> tuple[list[int], list[float]]:
    """``recommend_transitions_rows`` by its definition, from ``score_transitions``."""
    scores = table.score_transitions(recent_items)
    ids = table.ids
    ranked = sorted((i for i in range(len(ids))
                     if scores[i] > 0 and ids[i] not in exclude),
                    key=lambda i: (-scores[i], ids[i]))[:max(k, 0)]
    return ranked, [float(scores[i]) for i in ranked]


# Every sum over the distinct rows only; by the rows' size (as for a big catalogue); every
# sum over the whole catalogue.
@pytest.mark.parametrize("dense_from, dense_below",
                         [(0, 0), (item_side.DENSE_FROM, 0), (0, 10**9)])
@pytest.mark.parametrize("seed", range(3))
def test_context_and_transition_rankings_are_the_k_best_positive_scores_ties_by_item_id(
        seed: int, dense_from: int, dense_below: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(item_side, "DENSE_FROM", dense_from)
    monkeypatch.setattr(item_side, "DENSE_BELOW", dense_below)
    rng = random.Random(seed)
    # Many items, long histories: big rows, compacted as users move on and are forgotten.
    history = histories(rng, items=60, seen_limit=30, events=60)
    ranked = table()
    states = sorted(((u, s) for u, states in history.items() for s in states),
                    key=lambda us: us[1].source_offset)
    checked = transitions = 0
    for n, (user, state) in enumerate(states):
        ranked.apply(0, state.source_offset, state)
        if n % 37 == 36:
            ranked.forget(f"u{rng.randrange(12)}")  # counts drop to zero
        if n % 5:
            continue
        context = rng.choices([f"i{i}" for i in range(62)], k=rng.randrange(0, 10))
        exclude = set(rng.sample([f"i{i}" for i in range(62)], rng.choice([0, 3, 30])))
        for k in (1, 4, 50):
            rows, scores = ranked.recommend_context_rows(context, k, exclude)
            assert (rows.tolist(), scores.tolist()) == dense_context_ranking(
                ranked, context, k, exclude)  # the same floats, bit for bit
            checked += len(rows)
            rows, scores = ranked.recommend_transitions_rows(context, k, exclude)
            assert (rows.tolist(), scores.tolist()) == dense_transition_ranking(
                ranked, context, k, exclude)
            transitions += len(rows)
    assert checked > 100 and transitions > 100
    latest = {user: states[-1] for user, states in history.items() if user in ranked._users}
    assert_matches(ranked, list(latest.values()))


def test_transitions_are_directed_shares_and_the_item_before_votes_at_half_weight() -> None:
    t = ItemSideTable(window=WINDOW, half_life_s=HALF_LIFE)
    for n, seen in enumerate((["a", "b", "c"], ["a", "b", "d"], ["a", "c"], ["b", "a"])):
        t.apply(0, n, UserState(user_id=f"u{n}", seen_items=seen))
    assert t.transition_counts(1) == {("a", "b"): 2, ("b", "c"): 1, ("b", "d"): 1,
                                      ("a", "c"): 1, ("b", "a"): 1}
    assert t.transition_counts(2) == {("a", "c"): 1, ("a", "d"): 1}
    # After a: b (2 of the 4 users holding a), c (1 of 4); no vote from before the context.
    assert t.recommend_transitions(["a"], k=3) == [("b", 0.5), ("c", 0.25)]
    # After (a, b): b's next items (each 1/3 of b's 3 holders), plus half of a's two-ahead
    # shares (c, d: 1/4 each); a itself follows b once, but is excluded as seen.
    got = dict(t.recommend_transitions(["a", "b"], k=5, exclude={"a", "b"}))
    assert got == pytest.approx({"c": 1 / 3 + 0.5 / 4, "d": 1 / 3 + 0.5 / 4})
    # Direction matters where co-visitation is symmetric: nobody went on from d.
    assert t.recommend_transitions(["d"], k=3) == []
    assert ("b", 0.0) not in t.recommend_context(["d"], k=3)
    order_one = ItemSideTable(window=WINDOW, half_life_s=HALF_LIFE, transition_order=1)
    for n, seen in enumerate((["a", "b", "c"], ["a", "b", "d"])):
        order_one.apply(0, n, UserState(user_id=f"u{n}", seen_items=seen))
    assert order_one.recommend_transitions(["a", "b"], k=3) == [("c", 0.5), ("d", 0.5)]


def test_forgetting_a_user_removes_their_transitions() -> None:
    t = ItemSideTable(window=WINDOW, half_life_s=HALF_LIFE)
    t.apply(0, 0, UserState(user_id="u0", seen_items=["a", "b"]))
    t.apply(0, 1, UserState(user_id="u1", seen_items=["a", "c"]))
    assert t.recommend_transitions(["a"], k=3) == [("b", 0.5), ("c", 0.5)]
    t.forget("u0")
    assert t.transition_counts(1) == {("a", "c"): 1}
    assert t.recommend_transitions(["a"], k=3) == [("c", 1.0)]


@pytest.mark.parametrize("kwargs", [{"transition_order": 0}, {"transition_order": 4},
                                    {"transition_decay": -0.1}, {"transition_decay": 1.5}])
def test_transition_settings_out_of_range_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ItemSideTable(**kwargs)

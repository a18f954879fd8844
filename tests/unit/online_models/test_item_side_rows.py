"""CountRows (the item-side table's co-visitation and transition rows) against a Counter.

Random updates of every kind (new columns, increments, drops to zero, rows emptied) are
checked against a plain ``Counter`` after each step, and so is the memory bound the module
promises: a row never keeps more zeros than both its non-zero counts and ``ZEROS_KEPT``.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from streamrec.online_models import item_side
from streamrec.online_models.covisit_rows import ZEROS_KEPT, CountRows
from test_item_side import (assert_matches, dense_context_ranking, dense_transition_ranking,
                            histories, table)


def assert_bounded(rows: CountRows) -> None:
    for held in rows._rows.values():
        size = held.size
        assert held.live == int(np.count_nonzero(held.counts[:size])) > 0
        assert size - held.live <= max(held.live, ZEROS_KEPT)
        assert len(held.position) == size <= len(held.columns) == len(held.counts)
        assert {column: p for p, column in enumerate(held.columns[:size])} == held.position
        # The numpy views read the typed arrays' own memory.
        assert held.view_counts.tolist() == held.counts.tolist()
        assert held.view_columns.tolist() == held.columns.tolist()


@pytest.mark.parametrize("seed", range(4))
def test_rows_hold_exactly_the_counts_and_stay_bounded(seed: int) -> None:
    rng = random.Random(seed)
    rows, want = CountRows(), Counter[tuple[int, int]]()
    for _ in range(3000):
        row = rng.randrange(6)
        if rng.random() < 0.3:
            columns = rng.sample(range(120), rng.randrange(1, 40))
            delta = 1 if rng.random() < 0.6 else -1
            if delta < 0:  # counts never go negative: take only what is held
                columns = [c for c in columns if want[(row, c)] > 0]
            rows.add_columns(row, columns, delta)
            for column in columns:
                want[(row, column)] += delta
        else:
            held = [c for (r, c), n in want.items() if r == row and n > 0]
            if held and rng.random() < 0.55:
                column, delta = rng.choice(held), -1
            else:
                column, delta = rng.randrange(120), 1
            rows.add(row, column, delta)
            want[(row, column)] += delta
        got = {(r, c): n for r, c, n in rows.nonzero()}
        assert got == {key: n for key, n in want.items() if n}
        assert_bounded(rows)
        for r in range(6):
            arrays = rows.arrays(r)
            held_row = {c: n for (rr, c), n in want.items() if rr == r and n}
            assert (arrays is None) == (not held_row) == (r not in rows)
            if arrays is not None:
                assert {int(c): float(n) for c, n in zip(*arrays) if n} == held_row


@pytest.mark.parametrize("dense_below", [0, 10**9])
def test_users_moving_on_compact_the_rows_and_rankings_stay_the_definitions(
        dense_below: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(item_side, "DENSE_BELOW", dense_below)
    # Few items, users capped at 6 seen items and moving on: old pairs drop to zero, rows of
    # many slots become mostly zeros and are compacted.
    rng = random.Random(11)
    history = histories(rng, items=90, seen_limit=6, recent_limit=6, events=150)
    ranked = table()
    compacted = 0
    states = sorted(((u, s) for u, states in history.items() for s in states),
                    key=lambda us: us[1].source_offset)
    for n, (_, state) in enumerate(states):
        before = ranked._pairs.slots()
        ranked.apply(0, state.source_offset, state)
        compacted += ranked._pairs.slots() < before - 2
        if n % 17 == 0:
            assert_bounded(ranked._pairs)
            for rows in ranked._next:
                assert_bounded(rows)
            for k in (3, 30):
                exclude = set(state.seen_items[:2])
                got = ranked.recommend_context_rows(state.recent_items, k, exclude)
                assert (got[0].tolist(), got[1].tolist()) == dense_context_ranking(
                    ranked, state.recent_items, k, exclude)
                got = ranked.recommend_transitions_rows(state.recent_items, k, exclude)
                assert (got[0].tolist(), got[1].tolist()) == dense_transition_ranking(
                    ranked, state.recent_items, k, exclude)
    assert compacted > 5
    assert_matches(ranked, [states[-1] for states in history.values()])

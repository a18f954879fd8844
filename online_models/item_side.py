"""Item-side statistics as an exact aggregate over every user's latest state.

``ItemSideTable`` is the table-aggregate-with-subtractor pattern of Kafka Streams: each user
contributes a function of their *latest* state only, and when the state changes the old
contribution is subtracted and the new one added (a tombstone only subtracts). The statistics
are therefore a function of the set of latest states: independent of arrival order, of
compaction, of restarts and of how many scorers share the partitions; re-applying a state is
a no-op (``apply`` takes a record only if it is newer than the one held for the user). When
a user is forgotten, their influence leaves the item statistics too.

A user contributes, from their state:

- popularity: +1 for every distinct item of ``seen_items`` (``n_i``: how many users hold i);
- co-visitation: +1 to ``C[i, j]`` for every two items at most ``window`` positions apart in
  ``seen_items`` (first-seen order: on a log without repeats, the pairs a per-event learner
  makes with each new item and the user's last ``window`` items);
- recency (decayed popularity): ``2 ** ((ts - reference) / half_life_s)`` for every event of
  ``recent_items`` with its time in ``recent_ts`` (a state without ``recent_ts`` adds none);
- transitions (directed, unlike co-visitation): +1 to ``T_g[i, j]`` when ``j`` comes exactly
  ``g`` positions after ``i`` in ``seen_items``, for each gap ``g`` up to ``transition_order``
  ("after i, users went on to j").

Exactness. Counts are integers. Decayed weights are integers too, fixed point with ``SHIFT``
fractional bits, so adding and subtracting them in any order gives the same sum bit for bit.
The ``reference`` time is a pure function of the held events: the first point of a grid of
step ``reference_step_s`` at or after the latest event time held. When it moves (a later
grid cell is reached, or the latest cell empties) every weight is recomputed from the held
events at the new reference: rare (once per step of event time), and exact. Two tables fed
the same latest states in any order therefore hold identical integers. Ranking uses the
weights normalised to their maximum, so the reference does not matter to it. Events more
than ~``SHIFT`` half-lives older than the reference weigh zero.

Ties rank by item id (arrival order differs between scorers); items no user holds any more
are never ranked, although they keep a slot in the item index (memory grows with the catalog).

Memory: per user, a copy of ``seen_items`` and of the recent events; per item pair within a
window, one count in each direction, so up to ``2 * window`` entries per seen item of every
user (no pruning: a bound on neighbours would depend on arrival order; the scorer reads whole
rows). ML-100K ends with 813,544 directed pair entries (window 20, 943 users). The counts are
held once, as the array rows the rankings read (``covisit_rows.CountRows``): a count that
drops to zero may keep its slot, at most ``max(live, ZEROS_KEPT)`` zeros in a row of ``live``
non-zero counts.

Rankings score only the items the context's rows name (a sum per item, in row order, the
same floats as the whole-catalogue definitions ``score_context`` and ``score_transitions``).

Updates are incremental in the common case, a state that appended items (and dropped its
oldest ones at the cap): only the pairs of the dropped and the appended positions change.
Any other change subtracts the whole old contribution and adds the new one.

>>> from streamrec.online_models.user_state import UserState
>>> table = ItemSideTable(window=2, half_life_s=10.0)
>>> table.apply(0, 0, UserState(user_id="a", seen_items=["x", "y"],
...                             recent_items=["x", "y"], recent_ts=[0.0, 10.0]))
True
>>> table.apply(1, 0, UserState(user_id="b", seen_items=["x", "z"]))
True
>>> table.apply(0, 0, UserState(user_id="a", seen_items=["x"]))  # not newer: ignored
False
>>> sorted(table.item_counts().items()), sorted(table.pair_counts().items())
([('x', 2), ('y', 1), ('z', 1)], [(('x', 'y'), 1), (('x', 'z'), 1)])
>>> sorted(table.decayed_weights(reference_ts=10.0).items())
[('x', 0.5), ('y', 1.0)]
>>> [item for item, _, _ in table.recommend_explained(k=2)]  # y is the more recent
['y', 'x']
>>> table.recommend_context(["y"], k=2)
[('x', 0.7071067811865475)]
>>> table.recommend_transitions(["x"], k=2)  # a went x -> y, b went x -> z
[('y', 0.5), ('z', 0.5)]
>>> table.recommend_transitions(["y"], k=2)  # nobody went on from y
[]
>>> table.forget("a")
>>> sorted(table.item_counts().items()), table.pair_counts()
([('x', 1), ('z', 1)], {('x', 'z'): 1})
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from typing import Collection, Iterable, Sequence

import numpy as np

from streamrec.online_models.base import Ranking
from streamrec.online_models.covisit_rows import CountRows
from streamrec.online_models.user_state import UserState

# Fractional bits of the fixed-point decayed weights (Python ints: no overflow).
SHIFT = 60
# Transition gaps counted at most (memory: one directed count per gap per seen item).
MAX_TRANSITION_ORDER = 3

# A sum of co-visitation or transition rows is accumulated over a whole-catalogue array when
# the catalogue is small or the rows hold at least 1 / DENSE_FROM of its size of entries (one
# bincount, no sort), else over the distinct rows only (a sort): both sum each item in row
# order.
DENSE_FROM = 32
DENSE_BELOW = 4096  # catalogues this small are always summed whole (cheaper than a sort)
# New items ranked by insertion into the id order; more at once are ranked by a sort.
RANK_INSERTS = 64

Event = tuple[str, float]

_NO_ROWS = np.empty(0, dtype=np.int64)
_NO_SCORES = np.empty(0, dtype=np.float64)


@dataclass(slots=True)
class _Held:
    """One user's contribution: the record it came from and what it adds."""

    partition: int
    offset: int
    seen: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    event_count: int = 0


class ItemSideTable:
    """Popularity, recency and co-visitation over the latest state of every user.

    Parameters
    ----------
    window
        Items of ``seen_items`` at most this many positions apart are co-visited.
    recent
        How many of a context's latest distinct (held) items vote in ``recommend_context``.
    half_life_s
        Event-time half-life of the recency weights.
    reference_step_s
        Grid step of the decay reference (default 8 half-lives): a larger step rebases less
        often and leaves the newest weights smaller (at least ``2 ** -(step / half_life)``).
    popularity_weight, recency_weight
        Blend of the two normalised components in ``recommend_explained``.
    transition_order, transition_decay
        Gaps counted as transitions (1: the next item only; 2 also the one after), and the
        weight of each further gap's vote relative to the one before it.
    """

    def __init__(self, window: int = 20, recent: int = 20, half_life_s: float = 7 * 24 * 3600.0,
                 reference_step_s: float | None = None, popularity_weight: float = 0.3,
                 recency_weight: float = 0.7, transition_order: int = 2,
                 transition_decay: float = 0.5) -> None:
        if window <= 0 or recent <= 0:
            raise ValueError("window and recent must be positive")
        if not 1 <= transition_order <= MAX_TRANSITION_ORDER:
            raise ValueError(f"transition_order must be within 1..{MAX_TRANSITION_ORDER}")
        if not 0.0 <= transition_decay <= 1.0:
            raise ValueError("transition_decay must be within [0, 1]")
        if not half_life_s > 0:
            raise ValueError("half_life_s must be positive")
        step = 8.0 * half_life_s if reference_step_s is None else reference_step_s
        if not step > 0:
            raise ValueError("reference_step_s must be positive")
        self.window, self.recent, self.half_life_s = window, recent, half_life_s
        self.reference_step_s = step
        self.popularity_weight, self.recency_weight = popularity_weight, recency_weight
        self.transition_order, self.transition_decay = transition_order, transition_decay
        self._index: dict[str, int] = {}
        self._ids: list[str] = []
        self._counts: list[int] = []   # per item: users holding it in seen_items
        self._decayed: list[int] = []  # per item: fixed-point decayed weight at the reference
        # Symmetric co-visitation counts, as the array rows the rankings read (the only copy).
        self._pairs = CountRows()
        self._users: dict[str, _Held] = {}
        self._by_partition: dict[int, set[str]] = {}
        self._cells: Counter[int] = Counter()  # held events per grid cell of event time
        self._reference_cell: int | None = None
        # Derived arrays for ranking: rebuilt after a rebase or a new item, else only the
        # items a state changed are refreshed (the same float conversions, far fewer).
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._dirty: set[int] = set()
        self._id_rank: np.ndarray | None = None
        self._sorted_ids: list[str] = []  # ids in order, for _id_rank's updates
        # Directed transition counts per gap (index g - 1), kept as the pairs are.
        self._next = [CountRows() for _ in range(transition_order)]

    def __getstate__(self) -> dict:
        # The ranking arrays and the id order are derived data, rebuilt lazily on the next
        # ranking: leave them out so pickles depend on learned state only.
        state = self.__dict__.copy()
        state.update(_arrays=None, _dirty=set(), _id_rank=None, _sorted_ids=[])
        return state

    # -- updates ---------------------------------------------------------------------------
    def apply(self, partition: int, record_offset: int, state: UserState) -> bool:
        """Take ``state`` as its user's latest, unless the held record is as new or newer.

        Offsets order records within a partition only: a state from another partition than
        the held one replaces it (a user's key lives in one partition). Returns whether the
        state was taken.
        """
        held = self._users.get(state.user_id)
        if held is not None and held.partition == partition and record_offset <= held.offset:
            return False
        self._set(state.user_id, partition, record_offset, state)
        return True

    def forget(self, user_id: str) -> None:
        """Remove the user's contribution (a tombstone); nothing of the user is kept."""
        held = self._users.get(user_id)
        if held is None:
            return
        self._update(held, [], [], 0)
        del self._users[user_id]
        self._leave_partition(user_id, held.partition)

    def replace_partition(self, partition: int,
                          states: Iterable[tuple[int, UserState]]) -> None:
        """Hold exactly ``states`` (record offset, state) for the partition's users.

        As if every user held for the partition were forgotten and then the states applied
        (the newest per user wins), so a re-assigned partition is exactly at its restore
        point whatever was learned of it before. A user whose held record is the one given
        is left as it is (a record at an offset never changes).
        """
        latest: dict[str, tuple[int, UserState]] = {}
        for offset, state in states:
            known = latest.get(state.user_id)
            if known is None or offset > known[0]:
                latest[state.user_id] = (offset, state)
        for user_id in list(self._by_partition.get(partition, ())):
            if user_id not in latest:
                self.forget(user_id)
        for user_id, (offset, state) in latest.items():
            held = self._users.get(user_id)
            if held is None or (held.partition, held.offset) != (partition, offset):
                self._set(user_id, partition, offset, state)

    # -- read accessors ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._users)

    def users_of(self, partition: int) -> dict[str, int]:
        """The users held for a partition, with the offset of the record each came from."""
        return {user: self._users[user].offset for user in self._by_partition.get(partition, ())}

    def item_counts(self) -> dict[str, int]:
        """Users holding each item in ``seen_items`` (popularity, and co-visitation's ``n_i``)."""
        return {self._ids[i]: n for i, n in enumerate(self._counts) if n}

    def pair_counts(self) -> dict[tuple[str, str], int]:
        """Co-visitation count of every pair, keyed ``(a, b)`` with ``a < b``."""
        ids = self._ids
        return {(ids[i], ids[j]): n for i, j, n in self._pairs.nonzero() if ids[i] < ids[j]}

    def transition_counts(self, gap: int = 1) -> dict[tuple[str, str], int]:
        """Directed counts ``(i, j)``: users with ``j`` exactly ``gap`` positions after ``i``."""
        ids = self._ids
        return {(ids[i], ids[j]): n for i, j, n in self._next[gap - 1].nonzero()}

    @property
    def reference_ts(self) -> float | None:
        """The decay reference (None while no event with a time is held)."""
        cell = self._reference_cell
        return None if cell is None else cell * self.reference_step_s

    def decayed_weights(self, reference_ts: float | None = None) -> dict[str, float]:
        """Each item's summed ``2 ** ((ts - reference_ts) / half_life_s)`` (default: ours)."""
        own = self.reference_ts
        if own is None:
            return {}
        scale = 2.0 ** ((own - (own if reference_ts is None else reference_ts)) / self.half_life_s)
        return {self._ids[i]: math.ldexp(q, -SHIFT) * scale
                for i, q in enumerate(self._decayed) if q}

    # -- ranking (never mutates what is learned) -----------------------------------------------
    def recommend_explained(self, k: int, exclude: Collection[str] = ()
                            ) -> list[tuple[str, float, dict[str, float]]]:
        """Top-k by blended popularity and recency, with both components (each max 1)."""
        top, blended, pop, rec = self.recommend_explained_rows(k, exclude)
        ids = self._ids
        return [(ids[i], score, {"popularity": p, "recency": r})
                for i, score, p, r in zip(top.tolist(), blended.tolist(), pop.tolist(),
                                          rec.tolist())]

    def recommend_explained_rows(self, k: int, exclude: Collection[str] = (),
                                 exclude_rows: np.ndarray | None = None
                                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``recommend_explained`` as arrays: rows of ``ids``, blended score, popularity and
        recency of each (the scorer explains only the items it publishes). ``exclude_rows``:
        ``rows_of(exclude)`` if the caller has it already (then ``exclude`` is not read)."""
        if k <= 0 or not self._ids:
            empty = np.empty(0)
            return np.empty(0, dtype=np.int64), empty, empty, empty
        counts, decayed, held, _ = self._derived()
        popularity = counts / counts.max() if counts.max() > 0 else counts
        recency = decayed / decayed.max() if decayed.max() > 0 else decayed
        blended = self.popularity_weight * popularity + self.recency_weight * recency
        if exclude_rows is None:
            exclude_rows = self.rows_of(exclude)
        top = self._top(np.where(held, blended, -np.inf), k, exclude_rows)
        return top, blended[top], popularity[top], recency[top]

    def recommend_context(self, recent_items: Sequence[str], k: int,
                          exclude: Collection[str] = ()) -> Ranking:
        """Top-k co-visited items for a context (item ids, oldest first); positive only.

        A score is ``sum_j C[j, i] / sqrt(n_j * n_i)`` over the context's last ``recent``
        distinct items that some user holds.
        """
        top, scores = self.recommend_context_rows(recent_items, k, exclude)
        ids = self._ids
        return [(ids[i], score) for i, score in zip(top.tolist(), scores.tolist())]

    def recommend_context_rows(self, recent_items: Sequence[str], k: int,
                               exclude: Collection[str] = (),
                               exclude_rows: np.ndarray | None = None
                               ) -> tuple[np.ndarray, np.ndarray]:
        """``recommend_context`` as (rows of ``ids``, scores): the scorer's batch path.
        ``exclude_rows`` as in ``recommend_explained_rows``.

        Only the items the context's rows name are scored (``score_context`` gives the
        same floats for every item: each row's votes are added in the same order)."""
        voters = self._context_rows(recent_items)
        if k <= 0 or not voters:
            return _NO_ROWS, _NO_SCORES
        if exclude_rows is None:
            exclude_rows = self.rows_of(exclude)
        raw = self._counts
        columns = np.concatenate([row for _, row, _ in voters])
        norms = np.sqrt(np.array([raw[item] for item, _, _ in voters], dtype=np.float64))
        votes = np.concatenate([counts for _, _, counts in voters]) / np.repeat(
            norms, [row.shape[0] for _, row, _ in voters])
        rows, sums = self._sums(columns, votes, exclude_rows)
        # Positive sums (at least 1 / sqrt(users)) over norms of at most sqrt(users): every
        # score stays positive, the cut of "some evidence" is the sums'.
        scores = sums / self._derived()[3][rows]
        top = self._best(rows, scores, k)
        return rows[top], scores[top]

    def _sums(self, columns: np.ndarray, votes: np.ndarray, exclude_rows: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """The distinct ``columns`` not excluded with a positive sum of their ``votes``
        (ascending), each sum taken in input order from 0.0, as ``scores[row] += votes`` row
        by row does: the context lists' shared cut (no evidence is no recommendation)."""
        n = len(self._ids)
        if n <= DENSE_BELOW or columns.shape[0] * DENSE_FROM >= n:
            dense = np.bincount(columns, votes, minlength=n)
            dense[exclude_rows] = 0.0
            rows = np.flatnonzero(dense > 0.0)
            return rows, dense[rows]
        # np.unique(columns, return_inverse=True), without its overheads: a stable sort
        # groups each column's votes; the inverse keeps them in input order for bincount.
        order = np.argsort(columns, kind="stable")
        ordered = columns[order]
        first = np.empty(ordered.shape[0], dtype=bool)
        first[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
        inverse = np.empty_like(order)
        inverse[order] = np.cumsum(first) - 1
        sums = np.bincount(inverse, votes)
        rows = ordered[first]
        keep = sums > 0.0
        if exclude_rows.shape[0]:
            keep &= ~_members(rows, exclude_rows)
        return rows[keep], sums[keep]

    def _context_rows(self, recent_items: Sequence[str]
                      ) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """The context's last ``recent`` distinct held items, newest first, with their
        co-visitation rows (items without a row vote nothing and are left out)."""
        index, raw, pairs = self._index, self._counts, self._pairs
        seen: set[int] = set()
        out = []
        for item in reversed(recent_items):
            i = index.get(item)
            # Only held items vote: whether an unheld id is still indexed depends on history.
            if i is None or raw[i] <= 0 or i in seen:
                continue
            seen.add(i)
            arrays = pairs.arrays(i)
            if arrays is not None:
                out.append((i, *arrays))
            if len(seen) == self.recent:
                break
        return out

    def rows_of(self, items: Iterable[str]) -> np.ndarray:
        """The rows of those ``items`` the table indexes (to exclude them from rankings)."""
        listed = items if isinstance(items, Collection) else list(items)
        rows = np.fromiter(map(self._index.get, listed, repeat(-1)), dtype=np.int64,
                           count=len(listed))
        return rows[rows >= 0]

    def recommend_transitions(self, recent_items: Sequence[str], k: int,
                              exclude: Collection[str] = ()) -> Ranking:
        """Top-k next items after a context (item ids, oldest first); positive only.

        The context's latest distinct held item votes with its next-item shares
        ``T_1[last, i] / n_last``; with ``transition_order`` 2 the one before it adds
        ``transition_decay * T_2[before, i] / n_before`` (where users went two steps on).
        """
        top, scores = self.recommend_transitions_rows(recent_items, k, exclude)
        ids = self._ids
        return [(ids[i], score) for i, score in zip(top.tolist(), scores.tolist())]

    def recommend_transitions_rows(self, recent_items: Sequence[str], k: int,
                                   exclude: Collection[str] = (),
                                   exclude_rows: np.ndarray | None = None
                                   ) -> tuple[np.ndarray, np.ndarray]:
        """``recommend_transitions`` as (rows of ``ids``, scores): the scorer's batch path.
        ``exclude_rows`` as in ``recommend_explained_rows``. Only successors are scored
        (the same floats as ``score_transitions``)."""
        voters = self._transition_votes(recent_items)
        if k <= 0 or not voters:
            return _NO_ROWS, _NO_SCORES
        if exclude_rows is None:
            exclude_rows = self.rows_of(exclude)
        rows, scores = self._sums(np.concatenate([row for row, _ in voters]),
                                  np.concatenate([votes for _, votes in voters]),
                                  exclude_rows)
        top = self._best(rows, scores, k)
        return rows[top], scores[top]

    def _transition_votes(self, recent_items: Sequence[str]
                          ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(successors, vote of each) of the context's latest distinct held items, the
        latest first (gap 1), then the one before it (gap 2) ...; rowless items vote nothing."""
        index, raw = self._index, self._counts
        known = [index[i] for i in recent_items if i in index and raw[index[i]] > 0]
        latest = list(dict.fromkeys(reversed(known)))[: self.transition_order]
        weight, out = 1.0, []
        for gap, item in enumerate(latest, 1):
            arrays = self._next[gap - 1].arrays(item)
            if arrays is not None:
                successors, counts = arrays
                out.append((successors, counts * (weight / raw[item])))
            weight *= self.transition_decay
        return out

    def score_transitions(self, recent_items: Sequence[str]) -> np.ndarray:
        """Transition score of every indexed item after a context (a fresh array): the
        definition ``recommend_transitions_rows`` ranks."""
        scores = np.zeros(len(self._ids), dtype=np.float64)
        for successors, votes in self._transition_votes(recent_items):
            scores[successors] += votes
        return scores

    @property
    def ids(self) -> list[str]:
        """Item id of each row (rows only ever append: a row keeps its id)."""
        return self._ids

    def score_context(self, recent_items: Sequence[str]) -> np.ndarray:
        """Co-visitation score of every indexed item for a context (a fresh array): the
        definition ``recommend_context_rows`` ranks."""
        counts, raw = self._derived()[0], self._counts
        scores = np.zeros(counts.shape[0], dtype=np.float64)
        for other, neighbours, weights in self._context_rows(recent_items):
            # Each neighbour once per row, so the order of a row (and its zero counts)
            # cannot change a sum.
            scores[neighbours] += weights / math.sqrt(raw[other])
        return scores / np.sqrt(np.maximum(counts, 1.0))

    def _top(self, scores: np.ndarray, k: int, exclude_rows: np.ndarray) -> np.ndarray:
        """Indices of the k best finite scores, ties by item id (``scores`` is overwritten)."""
        if exclude_rows.shape[0]:
            scores[exclude_rows] = -np.inf
        candidates = np.flatnonzero(np.isfinite(scores))
        return candidates[self._best(candidates, scores[candidates], k)]

    def _best(self, candidates: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
        """Positions in ``candidates`` (distinct rows) of the k best ``values``, ties by
        item id, best first."""
        if k <= 0 or candidates.size == 0:
            return _NO_ROWS
        if candidates.size > k:
            kth = np.partition(values, candidates.size - k)[candidates.size - k]
            at = np.flatnonzero(values >= kth)  # the k best and every tie at the cut
            order = np.lexsort((self._ranks()[candidates[at]], -values[at]))
            return at[order[:k]]
        return np.lexsort((self._ranks()[candidates], -values))[:k]

    def _ranks(self) -> np.ndarray:
        """Each row's position in item id order (the tie-break of every ranking)."""
        ids, rank = self._ids, self._id_rank
        known = 0 if rank is None else rank.shape[0]
        if known == len(ids):
            assert rank is not None
            return rank
        if rank is None or len(ids) - known > RANK_INSERTS:
            self._sorted_ids = sorted(ids)
            rank = np.empty(len(ids), dtype=np.int64)
            rank[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
        else:
            # A few new items (the common case): each shifts the ranks after its own.
            sorted_ids = self._sorted_ids
            rank = np.concatenate([rank, np.empty(len(ids) - known, dtype=np.int64)])
            for row in range(known, len(ids)):
                at = bisect.bisect_left(sorted_ids, ids[row])
                sorted_ids.insert(at, ids[row])
                head = rank[:row]
                head[head >= at] += 1
                rank[row] = at
        self._id_rank = rank
        return rank

    def _derived(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(counts, decayed weights, held, co-visitation norm ``sqrt(max(n_i, 1))``) per
        row, as floats."""
        arrays, n = self._arrays, len(self._ids)
        if arrays is not None and arrays[0].shape[0] == n and self._dirty:
            # In place: only the rankers here read them, each within one call.
            counts, decayed, held, norms = arrays
            rows = np.fromiter(self._dirty, dtype=np.int64, count=len(self._dirty))
            counts[rows] = [self._counts[i] for i in rows.tolist()]
            decayed[rows] = [float(self._decayed[i]) for i in rows.tolist()]
            held[rows] = (counts[rows] > 0) | (decayed[rows] > 0)
            norms[rows] = np.sqrt(np.maximum(counts[rows], 1.0))
        elif arrays is None or arrays[0].shape[0] != n:
            counts = np.fromiter(self._counts, dtype=np.float64, count=n)
            decayed = np.fromiter(self._decayed, dtype=np.float64, count=n)
            arrays = self._arrays = (counts, decayed, (counts > 0) | (decayed > 0),
                                     np.sqrt(np.maximum(counts, 1.0)))
        self._dirty.clear()
        return arrays

    # -- the aggregate -------------------------------------------------------------------------
    def _set(self, user_id: str, partition: int, offset: int, state: UserState) -> None:
        held = self._users.get(user_id)
        if held is None:
            held = self._users[user_id] = _Held(partition, offset)
            self._by_partition.setdefault(partition, set()).add(user_id)
        elif held.partition != partition:
            self._leave_partition(user_id, held.partition)
            self._by_partition.setdefault(partition, set()).add(user_id)
        # Defensive: the decoder refuses duplicates and ill-formed times, but the table must
        # stay exact for any state it is handed (subtraction replays exactly these lists).
        seen = list(dict.fromkeys(state.seen_items))
        times = state.recent_ts
        events = (list(zip(state.recent_items, times))
                  if len(times) == len(state.recent_items) and all(map(math.isfinite, times))
                  else [])
        self._update(held, seen, events, state.event_count)
        held.partition, held.offset = partition, offset

    def _update(self, held: _Held, seen: list[str], events: list[Event],
                event_count: int) -> None:
        """Move ``held``'s contribution to the one of (seen, events), and store it."""
        old_seen, old_events = held.seen, held.events
        dropped = _shift(old_seen, seen, old_seen.index(seen[0]) if seen and seen[0]
                         in old_seen else len(old_seen))
        self._remove_seen(old_seen, dropped)
        self._add_seen(seen, len(old_seen) - dropped)
        # Events may repeat an item: the shift is what the event counter says was appended.
        appended = event_count - held.event_count
        dropped_events = _shift(old_events, events, len(old_events) + appended - len(events))
        kept = len(old_events) - dropped_events
        removed, added = old_events[:dropped_events], events[kept:]
        held.seen, held.events, held.event_count = seen, events, event_count
        for item, _ in added:
            self._item(item)  # a recent item may not be among the seen ones (they were capped)
        cells, step = self._cells, self.reference_step_s
        for _, ts in removed:
            cell = math.floor(ts / step) + 1
            cells[cell] -= 1
            if not cells[cell]:
                del cells[cell]
        for _, ts in added:
            cells[math.floor(ts / step) + 1] += 1
        reference = max(cells) if cells else None
        if reference != self._reference_cell:
            self._reference_cell = reference
            self._rebase()
            return
        decayed, weight, dirty = self._decayed, self._weight, self._dirty
        for item, ts in removed:
            i = self._index[item]
            decayed[i] -= weight(ts)
            dirty.add(i)
        for item, ts in added:
            i = self._item(item)
            decayed[i] += weight(ts)
            dirty.add(i)

    def _remove_seen(self, seen: list[str], dropped: int) -> None:
        index, counts, window = self._index, self._counts, self.window
        for a in range(dropped):
            i = index[seen[a]]
            counts[i] -= 1
            self._dirty.add(i)
            self._remove_pairs(i, [index[seen[b]]
                                   for b in range(a + 1, min(a + 1 + window, len(seen)))])
            for gap in range(1, min(self.transition_order, len(seen) - 1 - a) + 1):
                self._transition(gap, i, index[seen[a + gap]], -1)

    def _add_seen(self, seen: list[str], kept: int) -> None:
        counts, window, index = self._counts, self.window, self._index
        for b in range(kept, len(seen)):
            i = self._item(seen[b])
            counts[i] += 1
            self._dirty.add(i)
            self._add_pairs(i, [index[seen[a]] for a in range(max(0, b - window), b)])
            for gap in range(1, min(self.transition_order, b) + 1):
                self._transition(gap, index[seen[b - gap]], i, 1)

    def _add_pairs(self, i: int, others: list[int]) -> None:
        """+1 to ``C[i, other]`` and ``C[other, i]`` for each of ``others`` (distinct, none
        of them ``i``), with ``i``'s own row updated in one pass."""
        self._move_pairs(i, others, 1)

    def _remove_pairs(self, i: int, others: list[int]) -> None:
        """-1 to ``C[i, other]`` and ``C[other, i]`` for each of ``others``, as above."""
        self._move_pairs(i, others, -1)

    def _move_pairs(self, i: int, others: list[int], delta: int) -> None:
        if not others:
            return
        pairs = self._pairs
        pairs.add_columns(i, others, delta)
        pairs.add_to_rows(others, i, delta)

    def _transition(self, gap: int, i: int, j: int, delta: int) -> None:
        self._next[gap - 1].add(i, j, delta)

    def _weight(self, ts: float) -> int:
        assert self._reference_cell is not None
        reference = self._reference_cell * self.reference_step_s
        return int(math.ldexp(2.0 ** ((ts - reference) / self.half_life_s), SHIFT))

    def _rebase(self) -> None:
        # Every weight again at the new reference, from the held events: exact, and the
        # same integers whatever order the states came in.
        decayed = [0] * len(self._ids)
        if self._reference_cell is not None:
            weight, index = self._weight, self._index
            for held in self._users.values():
                for item, ts in held.events:
                    decayed[index[item]] += weight(ts)
        self._decayed = decayed
        self._arrays = None

    def _item(self, item_id: str) -> int:
        i = self._index.get(item_id)
        if i is None:
            i = self._index[item_id] = len(self._ids)
            self._ids.append(item_id)
            self._counts.append(0)
            self._decayed.append(0)
        return i

    def _leave_partition(self, user_id: str, partition: int) -> None:
        users = self._by_partition.get(partition)
        if users is not None:
            users.discard(user_id)
            if not users:
                del self._by_partition[partition]


def _members(rows: np.ndarray, of: np.ndarray) -> np.ndarray:
    """``np.isin(rows, of)`` (``of`` not empty), by binary search: no per-call set-up."""
    ordered = np.sort(of)
    at = np.searchsorted(ordered, rows)
    np.minimum(at, ordered.shape[0] - 1, out=at)
    return ordered[at] == rows


def _shift(old: list, new: list, dropped: int) -> int:
    """How many leading entries of ``old`` to drop so that ``new`` is the rest plus appended.

    ``dropped`` is the guess; when it does not hold, all of ``old`` is dropped (and all of
    ``new`` added): the full recomputation.
    """
    kept = len(old) - dropped
    if 0 <= dropped <= len(old) and kept <= len(new) and old[dropped:] == new[:kept]:
        return dropped
    return len(old)

"""Item-to-item co-visitation, learned on every event: "users who just saw j then saw i".

When a user meets a new item ``i``, the pair count ``C[j, i]`` (and ``C[i, j]``) grows by one
for each of the user's last ``window`` distinct items ``j``. A user's score for ``i`` is
``sum_j C[j, i] / sqrt(n_j * n_i)`` over their last ``recent`` items, ``n`` counting how
often an item was met. Unlike the dense item-kNN baseline, memory is sparse and bounded:
each event touches ``window`` pairs, and an item keeps at most ``max_neighbours``
co-visited items (the least visited ones are pruned when a row grows past twice that).

Counts are aggregates: ``forget_user`` drops the user's own history (the sequence that
would pair their next items), while pair counts, like popularity counts, keep no user id.

>>> from streamrec.events import ClickEvent
>>> model = CoVisitation(window=2)
>>> for n, (user, item) in enumerate([("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"),
...                                   ("c", "x")]):
...     model.learn_one(ClickEvent(event_id=str(n), user_id=user, item_id=item,
...                                type="click", ts=float(n)))
>>> model.recommend("c", k=1)
[('y', 0.816496580927726)]
"""

from __future__ import annotations

from typing import Collection, Sequence

import numpy as np

from online_models.base import Ranking
from online_models.baselines import ItemIndex
from streamrec.events import ClickEvent


class CoVisitation:
    """Sparse, bounded item co-visitation counts with per-user recent windows.

    Parameters
    ----------
    window
        How many of the user's latest distinct items a new item is paired with.
    recent
        How many of the user's latest items vote when ranking.
    max_neighbours
        Co-visited items kept per item (the most frequent ones).
    """

    def __init__(self, window: int = 20, recent: int = 20, max_neighbours: int = 500) -> None:
        if window <= 0 or recent <= 0 or max_neighbours <= 0:
            raise ValueError("window, recent and max_neighbours must be positive")
        self.window, self.recent, self.max_neighbours = window, recent, max_neighbours
        self.items = ItemIndex()
        self.counts = np.zeros(64, dtype=np.float64)
        self.pairs: dict[int, dict[int, float]] = {}
        self.history: dict[str, list[int]] = {}  # user -> latest distinct items, oldest first

    def learn_one(self, event: ClickEvent) -> None:
        self.learn_item(event.user_id, event.item_id)

    def learn_item(self, user_id: str, item_id: str) -> None:
        """Fold in one visit of ``user_id`` to ``item_id`` (a repeat only moves it last)."""
        item = self.items.add(item_id)
        if item >= self.counts.shape[0]:
            self.counts = np.concatenate([self.counts, np.zeros(self.counts.shape[0])])
        history = self.history.setdefault(user_id, [])
        if item in history:
            history.remove(item)
            history.append(item)
            return
        self.counts[item] += 1.0
        row = self.pairs.setdefault(item, {})
        for other in history[-self.window:]:
            row[other] = row.get(other, 0.0) + 1.0
            other_row = self.pairs.setdefault(other, {})
            other_row[item] = other_row.get(item, 0.0) + 1.0
            if len(other_row) > 2 * self.max_neighbours:
                self._prune(other)
        if len(row) > 2 * self.max_neighbours:
            self._prune(item)
        history.append(item)
        del history[:-max(self.window, self.recent)]

    def _prune(self, item: int) -> None:
        # Keep the most co-visited neighbours; ties by lower index, so pruning is
        # deterministic. Amortised: a row is pruned only after doubling its budget.
        row = self.pairs[item]
        kept = sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))[: self.max_neighbours]
        self.pairs[item] = dict(kept)

    def forget_user(self, user_id: str) -> None:
        self.history.pop(user_id, None)

    def knows_user(self, user_id: str) -> bool:
        return user_id in self.history

    def score_all(self, user_id: str) -> np.ndarray:
        """Co-visitation score of every known item for the user (zeros without history)."""
        return self._scores(self.history.get(user_id, ()))

    def score_context(self, recent_items: Sequence[str]) -> np.ndarray:
        """Scores for a ranking context given as item ids, oldest first (learns nothing).

        The scorer ranks with the user's sequence as ``user-state`` carries it, fresher
        than the history these counts were learned with; passing it here keeps the two
        apart, so ranking can never change what is learned.
        """
        index = self.items.index
        return self._scores([index[i] for i in recent_items if i in index])

    def recommend_context(self, recent_items: Sequence[str], k: int,
                          exclude: Collection[str] = ()) -> Ranking:
        return self._rank(self.score_context(recent_items), k, exclude)

    def _scores(self, history: Sequence[int]) -> np.ndarray:
        n = len(self.items)
        scores = np.zeros(n, dtype=np.float64)
        counts = self.counts[:n]
        for other in list(dict.fromkeys(reversed(history)))[: self.recent]:
            row = self.pairs.get(other)
            if not row:
                continue
            neighbours = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
            weights = np.fromiter(row.values(), dtype=np.float64, count=len(row))
            scores[neighbours] += weights / np.sqrt(counts[other])
        return scores / np.sqrt(np.maximum(counts, 1.0))

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        """Top-``k`` co-visited items (only items with a positive score), never mutating."""
        return self._rank(self.score_all(user_id), k, exclude)

    def _rank(self, scores: np.ndarray, k: int, exclude: Collection[str]) -> Ranking:
        scores[scores <= 0.0] = -np.inf  # no evidence is no recommendation
        return self.items.rank(scores, k, exclude)

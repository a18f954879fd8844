"""Popularity and recency on event time: the simplest rankers and the scorer's fallback.

``PopularityRecency`` keeps, for every item, an all-time count and a score that halves every
``half_life_s`` seconds of *event time* (the clock comes in with the events, never from the
wall). It ranks by a blend of the two, normalised to [0, 1], and reports both components
so a recommendation can be explained.

>>> from streamrec.events import ClickEvent
>>> model = PopularityRecency(half_life_s=10.0)
>>> for i, item in enumerate(["a", "a", "b", "c", "c", "c"]):
...     model.learn_one(ClickEvent(event_id=str(i), user_id="u", item_id=item, type="click", ts=float(i)))
>>> [item for item, _ in model.recommend("u", k=2)]
['c', 'a']
>>> [item for item, _ in model.recommend("u", k=2, exclude={"c"})]
['a', 'b']
"""

from __future__ import annotations

import math
from typing import Collection

import msgspec
import numpy as np

from streamrec.online_models.base import Ranking
from streamrec.online_models.learner_state import ArrayState, distinct, finite, require
from streamrec.events import ClickEvent

# Decayed scores are stored relative to a reference time; past this exponent we rebase
# all of them so that 2**x never overflows a float64.
_REBASE_EXPONENT = 60.0


class PopularityState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PopularityRecency`` as plain data (the ranking caches are derived, left out)."""

    half_life_s: float
    popularity_weight: float
    recency_weight: float
    items: list[str]  # first-seen order: the item index
    counts: ArrayState
    decayed: ArrayState
    reference_ts: float | None
    latest_ts: float  # -inf until the first event


class PopularityRecency:
    """All-time popularity blended with time-decayed popularity (recency)."""

    def __init__(self, half_life_s: float = 7 * 24 * 3600.0, popularity_weight: float = 0.3,
                 recency_weight: float = 0.7) -> None:
        if half_life_s <= 0:
            raise ValueError("half_life_s must be positive")
        self.half_life_s = half_life_s
        self.popularity_weight = popularity_weight
        self.recency_weight = recency_weight
        self._index: dict[str, int] = {}
        self._items: list[str] = []
        self._counts = np.zeros(64, dtype=np.float64)
        self._decayed = np.zeros(64, dtype=np.float64)
        self._reference_ts: float | None = None
        self._latest_ts = -math.inf
        # Normalised components are recomputed only after learning, not on every ranking.
        self._components_cache: dict[str, np.ndarray] | None = None
        self._blended_cache: np.ndarray | None = None

    @property
    def n_items(self) -> int:
        return len(self._items)

    def learn_one(self, event: ClickEvent) -> None:
        self.learn_item(event.item_id, event.ts)

    def learn_item(self, item_id: str, ts: float, weight: float = 1.0) -> None:
        index = self._index.get(item_id)
        if index is None:
            index = self._add_item(item_id)
        if self._reference_ts is None:
            self._reference_ts = ts
        exponent = (ts - self._reference_ts) / self.half_life_s
        if exponent > _REBASE_EXPONENT:
            self._rebase(ts)
            exponent = 0.0
        self._components_cache = self._blended_cache = None
        self._counts[index] += weight
        self._decayed[index] += weight * 2.0 ** exponent
        self._latest_ts = max(self._latest_ts, ts)

    def component_scores(self) -> dict[str, np.ndarray]:
        """Per-item components, each normalised so the best item scores 1 (do not mutate)."""
        if self._components_cache is not None:
            return self._components_cache
        n = self.n_items
        counts, decayed = self._counts[:n], self._decayed[:n]
        self._components_cache = {
            "popularity": counts / counts.max() if n and counts.max() > 0 else counts.copy(),
            "recency": decayed / decayed.max() if n and decayed.max() > 0 else decayed.copy(),
        }
        return self._components_cache

    def scores(self) -> np.ndarray:
        """Blended score of every item (cached with the components; do not mutate)."""
        components = self.component_scores()
        if self._blended_cache is None:
            self._blended_cache = (self.popularity_weight * components["popularity"]
                                   + self.recency_weight * components["recency"])
        return self._blended_cache

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        return [(item, float(score)) for item, score, _ in self.recommend_explained(k, exclude)]

    def recommend_explained(self, k: int, exclude: Collection[str] = ()
                            ) -> list[tuple[str, float, dict[str, float]]]:
        """Top-k items not in ``exclude`` as (item, blended score, component scores)."""
        n = self.n_items
        if n == 0 or k <= 0:
            return []
        # Computed once per learning step, not per ranking: the scorer ranks far more often.
        components = self.component_scores()
        blended = self.scores()
        excluded = [self._index[i] for i in exclude if i in self._index]
        if excluded:
            blended = blended.copy()
            blended[excluded] = -np.inf
        available = n - len(excluded)
        take = min(k, available)
        if take <= 0:
            return []
        top = np.argpartition(-blended, take - 1)[:take] if take < n else np.arange(n)
        # Ties resolve by first-seen order (lower index first) so results are deterministic.
        top = top[np.lexsort((top, -blended[top]))][:take]
        # Converted column-wise (tolist) rather than item by item: the scorer asks for
        # deep lists (to fuse) on every trigger.
        names = list(components)
        columns = [components[name][top].tolist() for name in names]
        items = self._items
        return [(items[i], score, dict(zip(names, values)))
                for i, score, values in zip(top.tolist(), blended[top].tolist(), zip(*columns))]

    def to_state(self) -> PopularityState:
        return PopularityState(
            half_life_s=self.half_life_s, popularity_weight=self.popularity_weight,
            recency_weight=self.recency_weight, items=list(self._items),
            counts=ArrayState.of(self._counts), decayed=ArrayState.of(self._decayed),
            reference_ts=self._reference_ts, latest_ts=self._latest_ts)

    @classmethod
    def from_state(cls, state: PopularityState) -> "PopularityRecency":
        """The model ``to_state`` exported; ``StateError`` (a ``ValueError``) if inconsistent."""
        require(finite(state.half_life_s, "half_life_s") > 0, "half_life_s must be positive")
        model = cls(half_life_s=state.half_life_s,
                    popularity_weight=finite(state.popularity_weight, "popularity_weight"),
                    recency_weight=finite(state.recency_weight, "recency_weight"))
        counts = state.counts.to_array("<f8", ndim=1, finite=True)
        decayed = state.decayed.to_array("<f8", ndim=1, finite=True)
        require(counts.shape == decayed.shape and counts.shape[0] >= max(len(state.items), 1),
                "popularity arrays of inconsistent lengths")
        require(state.reference_ts is None or math.isfinite(state.reference_ts),
                "reference_ts must be finite")
        require(math.isfinite(state.latest_ts) or state.latest_ts == -math.inf,
                "latest_ts must be finite (or -inf before any event)")
        model._index, model._items = distinct(state.items, "items"), list(state.items)
        model._counts, model._decayed = counts, decayed
        model._reference_ts, model._latest_ts = state.reference_ts, state.latest_ts
        return model

    def __getstate__(self) -> dict:
        # The cache is derived data: leave it out so pickles depend on learned state only.
        state = self.__dict__.copy()
        state["_components_cache"] = state["_blended_cache"] = None
        return state

    def _add_item(self, item_id: str) -> int:
        index = len(self._items)
        self._index[item_id] = index
        self._items.append(item_id)
        if index >= len(self._counts):
            self._counts = np.concatenate([self._counts, np.zeros_like(self._counts)])
            self._decayed = np.concatenate([self._decayed, np.zeros_like(self._decayed)])
        return index

    def _rebase(self, ts: float) -> None:
        assert self._reference_ts is not None
        shift = (ts - self._reference_ts) / self.half_life_s
        self._decayed[: self.n_items] *= 2.0 ** (-shift)
        self._reference_ts = ts

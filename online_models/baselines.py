"""Reference recommenders that every replay runs beside the system under test.

Each baseline is a pure ``Recommender``: ``learn_one`` folds in one event, ``recommend``
ranks without touching state. Items get a dense index on first sight, so scores live in
numpy arrays and ties break deterministically by first-seen order (earlier item first).

>>> from streamrec.events import ClickEvent
>>> model = MostPopular()
>>> for n, item in enumerate(["a", "b", "b"]):
...     model.learn_one(ClickEvent(event_id=str(n), user_id="u", item_id=item, type="click", ts=n))
>>> model.recommend("v", k=2)
[('b', 2.0), ('a', 1.0)]
"""

from __future__ import annotations

from collections import Counter
from typing import Collection

import numpy as np

from streamrec.online_models.base import Ranking
from streamrec.events import ClickEvent


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest finite scores, best first, ties by lower index.

    ``argpartition`` alone picks arbitrary members of a tie at the cut-off; taking
    everything above the k-th value and then the lowest-index ties keeps it deterministic.
    """
    n = scores.shape[0]
    if k <= 0 or n == 0:
        return np.empty(0, dtype=np.int64)
    if k < n:
        kth = np.partition(scores, n - k)[n - k]
        above = np.flatnonzero(scores > kth)
        ties = np.flatnonzero(scores == kth)[: k - above.shape[0]]
        idx = np.concatenate([above, ties])
    else:
        idx = np.arange(n)
    idx = idx[np.lexsort((idx, -scores[idx]))]
    return idx[np.isfinite(scores[idx])]


class ItemIndex:
    """Item id ↔ dense index, growing on first sight; index order is first-seen order."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, item_id: str) -> int:
        idx = self.index.get(item_id)
        if idx is None:
            idx = self.index[item_id] = len(self.ids)
            self.ids.append(item_id)
        return idx

    def rank(self, scores: np.ndarray, k: int, exclude: Collection[str]) -> Ranking:
        """Top-``k`` of ``scores`` (one per known item, a fresh array we may overwrite)."""
        if exclude:
            ex = [self.index[i] for i in exclude if i in self.index]
            scores[ex] = -np.inf
        best = top_k(scores, k)
        return [(self.ids[i], float(scores[i])) for i in best]


def _grow(array: np.ndarray, size: int, square: bool = False) -> np.ndarray:
    """Return ``array`` with at least ``size`` rows (and columns if ``square``), doubling."""
    if array.shape[0] >= size:
        return array
    new = max(size, 2 * array.shape[0])
    shape = (new, new) if square else (new,) + array.shape[1:]
    grown = np.zeros(shape, dtype=array.dtype)
    grown[tuple(slice(0, d) for d in array.shape)] = array
    return grown


class MostPopular:
    """All-time interaction counts: the floor every recommender must clear."""

    def __init__(self) -> None:
        self.items = ItemIndex()
        self.counts = np.zeros(64, dtype=np.float64)

    def learn_one(self, event: ClickEvent) -> None:
        idx = self.items.add(event.item_id)
        self.counts = _grow(self.counts, idx + 1)
        self.counts[idx] += 1.0

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        return self.items.rank(self.counts[: len(self.items)].copy(), k, exclude)


class RecentPopular:
    """Popularity with exponential decay on event time: what is hot *now*.

    An event at time ``t`` weighs ``2 ** ((t - ref) / half_life_s)``; ranking ignores the
    common scale, so weights are rebased rather than decaying every item on every event.
    """

    def __init__(self, half_life_s: float = 7 * 24 * 3600.0) -> None:
        if half_life_s <= 0:
            raise ValueError("half_life_s must be positive")
        self.half_life_s = half_life_s
        self.items = ItemIndex()
        self.scores = np.zeros(64, dtype=np.float64)
        self._ref: float | None = None

    def learn_one(self, event: ClickEvent) -> None:
        idx = self.items.add(event.item_id)
        self.scores = _grow(self.scores, idx + 1)
        if self._ref is None:
            self._ref = event.ts
        exponent = (event.ts - self._ref) / self.half_life_s
        if exponent > 64.0:  # rebase before weights overflow; order is unchanged
            self.scores *= 2.0 ** -exponent
            self._ref, exponent = event.ts, 0.0
        self.scores[idx] += 2.0 ** exponent

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        return self.items.rank(self.scores[: len(self.items)].copy(), k, exclude)


class ItemKNN:
    """Incremental item-to-item kNN over co-occurrence in users' histories.

    When a user meets a new item ``i``, ``C[i, j]`` and ``C[j, i]`` grow by one for every
    item ``j`` already in their history. ``score(i) = sum_j C[j, i] / sqrt(n_j * n_i)`` over
    the user's last ``recent`` items, ``n`` being item interaction counts. ``C`` is a dense
    float32 matrix (2.8 MB for MovieLens' 1,682 items) that doubles as items appear.
    """

    def __init__(self, recent: int = 20) -> None:
        self.recent = recent
        self.items = ItemIndex()
        self.counts = np.zeros(64, dtype=np.float64)
        self.cooc = np.zeros((64, 64), dtype=np.float32)
        self.history: dict[str, list[int]] = {}
        self.seen: dict[str, set[int]] = {}

    def learn_one(self, event: ClickEvent) -> None:
        idx = self.items.add(event.item_id)
        self.counts = _grow(self.counts, idx + 1)
        self.cooc = _grow(self.cooc, idx + 1, square=True)
        self.counts[idx] += 1.0
        seen = self.seen.setdefault(event.user_id, set())
        if idx in seen:
            return
        history = self.history.setdefault(event.user_id, [])
        if history:
            self.cooc[idx, history] += 1.0
            self.cooc[history, idx] += 1.0
        history.append(idx)
        seen.add(idx)

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        n = len(self.items)
        recent = self.history.get(user_id, [])[-self.recent:]
        if not recent:
            return self.items.rank(np.zeros(n), k, exclude)
        counts = self.counts[:n]
        rows = self.cooc[recent, :n] / np.sqrt(counts[recent])[:, None]
        scores = rows.sum(axis=0, dtype=np.float64) / np.sqrt(np.maximum(counts, 1.0))
        return self.items.rank(scores, k, exclude)


class MarkovChain:
    """First-order transitions from the user's last item to the next one.

    Items never seen after the last item keep a score below 1, proportional to their
    popularity, so a sparse row still yields a full, sensible list.
    """

    def __init__(self) -> None:
        self.items = ItemIndex()
        self.counts = np.zeros(64, dtype=np.float64)
        self.transitions: dict[int, Counter[int]] = {}
        self.last: dict[str, int] = {}

    def learn_one(self, event: ClickEvent) -> None:
        idx = self.items.add(event.item_id)
        self.counts = _grow(self.counts, idx + 1)
        self.counts[idx] += 1.0
        prev = self.last.get(event.user_id)
        if prev is not None and prev != idx:
            self.transitions.setdefault(prev, Counter())[idx] += 1
        self.last[event.user_id] = idx

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        counts = self.counts[: len(self.items)]
        scores = counts / (counts.sum() + 1.0)
        row = self.transitions.get(self.last.get(user_id, -1))
        if row:
            scores[list(row.keys())] += np.fromiter(row.values(), dtype=np.float64)
        return self.items.rank(scores, k, exclude)


class RiverMF:
    """river's ``reco.BiasedMF``, the river reference, ranked without side effects.

    ``predict_one`` inserts a random vector for an unknown user or item, so ranking never
    calls it: item vectors and biases are mirrored into numpy arrays after each update and
    the user's are read with ``dict.get``. The target is the event's ``value`` (a rating)
    when present, else 1; ``negatives`` extra random known items per event are learned
    with target 0, which gives implicit-feedback streams something to rank by.
    """

    def __init__(self, n_factors: int = 10, lr: float = 0.02, l2: float = 0.0,
                 negatives: int = 0, seed: int = 0) -> None:
        from river import optim, reco

        self.n_factors, self.lr, self.l2 = n_factors, lr, l2
        self.negatives, self.seed = negatives, seed
        self.model = reco.BiasedMF(
            n_factors=n_factors, bias_optimizer=optim.SGD(lr), latent_optimizer=optim.SGD(lr),
            l2_bias=l2, l2_latent=l2, seed=seed,
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed))
        self.items = ItemIndex()
        self.item_vectors = np.zeros((64, n_factors), dtype=np.float64)
        self.item_biases = np.zeros(64, dtype=np.float64)
        self._rng = np.random.default_rng(seed)

    def learn_one(self, event: ClickEvent) -> None:
        y = 1.0 if event.value is None else float(event.value)
        self._learn(event.user_id, event.item_id, y)
        for _ in range(self.negatives if len(self.items) > 1 else 0):
            other = self.items.ids[int(self._rng.integers(len(self.items)))]
            if other != event.item_id:
                self._learn(event.user_id, other, 0.0)

    def _learn(self, user_id: str, item_id: str, y: float) -> None:
        self.model.learn_one(user=user_id, item=item_id, y=y)
        idx = self.items.add(item_id)
        self.item_vectors = _grow(self.item_vectors, idx + 1)
        self.item_biases = _grow(self.item_biases, idx + 1)
        self.item_vectors[idx] = self.model.i_latents[item_id]
        self.item_biases[idx] = self.model.i_biases[item_id]

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        n = len(self.items)
        scores = self.model.global_mean.get() + self.item_biases[:n]
        user_vector = self.model.u_latents.get(user_id)  # .get: no default vector created
        if user_vector is not None:
            scores = scores + self.item_vectors[:n] @ user_vector
            scores += self.model.u_biases.get(user_id, 0.0)
        return self.items.rank(np.array(scores, dtype=np.float64), k, exclude)


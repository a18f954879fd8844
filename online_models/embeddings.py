"""Online user and item embeddings, learned by SGD on every event.

A user's score for an item is ``u · v_i + b_i``. Every event nudges the user's vector, the
positive item's vector and a few sampled negatives' vectors (sampled softmax over
``[positive, negatives]``, or a logistic loss). Negatives are drawn in bulk from a
pre-drawn pool of uniform numbers: drawing them one event at a time costs more than the
update itself (DESIGN figures). Items get a vector on first sight, so a new item is
recommendable at once, with no retrain.

Memory stays bounded the way Monolith does it: an id gets a vector only after
``admission_threshold`` sightings, and ids not seen for ``ttl_s`` seconds of event time
are evicted; ``admitted``, ``evicted`` and ``rejected_admission`` count what happened.
"""

from __future__ import annotations

import math
from typing import Collection, Iterable, Sequence

import msgspec
import numpy as np

from streamrec.online_models.base import Ranking
from streamrec.online_models.baselines import top_k
from streamrec.online_models.embedding_table import (EmbeddingTable, EmbeddingTableState, adopt_table,
                                           rounds)
from streamrec.online_models.learner_state import (ArrayState, RngState, count, require,
                                                   slots, step_size)
from streamrec.events import ClickEvent


class EmbeddingsState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``OnlineUserEmbeddings`` as plain data: hyper-parameters, then learned state."""

    dim: int
    lr: float
    l2: float
    n_negatives: int
    negative_sampling: str
    loss: str
    init_scale: float
    admission_threshold: int
    ttl_s: float | None
    popularity_window: int
    pool_size: int
    seed: int
    rng: RngState
    users: EmbeddingTableState
    items: EmbeddingTableState
    pending_kinds: list[str]
    pending_ids: list[str]
    pending_counts: ArrayState  # int64
    pending_ts: ArrayState  # float64
    next_sweep_ts: float | None
    admitted: int
    evicted: int
    rejected_admission: int
    pool: ArrayState
    pool_pos: int
    recent: ArrayState
    recent_n: int


class OnlineUserEmbeddings:
    """Per-event SGD on user and item vectors with sampled negatives.

    Parameters
    ----------
    dim
        Vector size.
    lr, l2
        SGD step and L2 penalty (the same for users, items and item biases).
    n_negatives
        Negatives sampled per event.
    negative_sampling
        ``"uniform"`` over known items or ``"popularity"`` (uniform over the last
        ``popularity_window`` positives, i.e. proportional to recent popularity).
    loss
        ``"softmax"`` (sampled softmax over positive and negatives) or ``"logistic"``.
    init_scale
        Standard deviation of new item vectors; users start at zero.
    admission_threshold, ttl_s
        Sightings before an id gets a vector; event-time seconds after which an unseen id
        is evicted (``None``: never).
    seed
        The only source of randomness.

    Examples
    --------
    >>> from streamrec.events import ClickEvent
    >>> model = OnlineUserEmbeddings(dim=8, seed=1)
    >>> for n in range(200):
    ...     user, item = f"u{n % 4}", f"i{(n % 4) * 2 + (n // 4) % 2}"
    ...     model.learn_one(ClickEvent(event_id=str(n), user_id=user, item_id=item,
    ...                                type="click", ts=float(n)))
    >>> sorted(item for item, _ in model.recommend("u1", k=2))
    ['i2', 'i3']
    >>> model.admitted, model.n_items
    (12, 8)
    """

    def __init__(self, dim: int = 32, lr: float = 0.2, l2: float = 1e-4, n_negatives: int = 4,
                 negative_sampling: str = "uniform", loss: str = "softmax",
                 init_scale: float = 0.1, admission_threshold: int = 1,
                 ttl_s: float | None = None, popularity_window: int = 20_000,
                 pool_size: int = 1 << 14, seed: int = 0) -> None:
        if negative_sampling not in ("uniform", "popularity"):
            raise ValueError("negative_sampling must be 'uniform' or 'popularity'")
        if loss not in ("softmax", "logistic"):
            raise ValueError("loss must be 'softmax' or 'logistic'")
        self.lr, self.l2, self.n_negatives = lr, l2, n_negatives
        self.negative_sampling, self.loss = negative_sampling, loss
        self.popularity_window, self.pool_size = popularity_window, pool_size
        self.dim, self.init_scale, self.seed = dim, init_scale, seed
        self.admission_threshold, self.ttl_s = admission_threshold, ttl_s
        self._rng = np.random.default_rng(seed)
        self._users, self._items = EmbeddingTable(dim), EmbeddingTable(dim)
        # Sightings of ids not yet admitted: (kind, id) -> (count, last event time).
        self._pending: dict[tuple[str, str], tuple[int, float]] = {}
        self._next_sweep_ts: float | None = None
        self.admitted = self.evicted = self.rejected_admission = 0
        # Learned state beyond the tables: the negative-sampling pool and recent positives.
        self._pool = np.empty(0)
        self._pool_pos = 0
        self._recent = np.zeros(popularity_window, dtype=np.int64)
        self._recent_n = 0

    # -- tables: admission, eviction, state hand-over --------------------------------------
    @property
    def n_items(self) -> int:
        return len(self._items.index)

    @property
    def n_users(self) -> int:
        return len(self._users.index)

    @property
    def current_dim(self) -> int:
        """Vector size now (differs from ``dim`` after adopting a deep model's table)."""
        return int(self._items.vectors.shape[1])

    def _admit(self, user_id: str, item_id: str, ts: float) -> tuple[int, int]:
        """Rows of the event's user and item (-1 while not admitted); refreshes last-seen."""
        self._maybe_sweep(ts)
        rows = []
        for kind, table, key in (("u", self._users, user_id), ("i", self._items, item_id)):
            row = table.index.get(key)
            if row is None:
                row = self._admit_new(kind, table, key, ts)
            elif ts > table.last_ts[row]:
                table.last_ts[row] = ts
            rows.append(row)
        return rows[0], rows[1]

    def _admit_new(self, kind: str, table: EmbeddingTable, key: str, ts: float) -> int:
        if self.admission_threshold > 1:
            count = self._pending.get((kind, key), (0, ts))[0] + 1
            if count < self.admission_threshold:
                self._pending[(kind, key)] = (count, ts)
                self.rejected_admission += 1
                return -1
            self._pending.pop((kind, key), None)
        self.admitted += 1
        if kind == "u":  # users start neutral: their first score is the item bias
            return table.add(key, ts, np.zeros(self.current_dim, dtype=np.float32))
        vector = self._rng.normal(0.0, self.init_scale, self.current_dim)
        return table.add(key, ts, vector.astype(np.float32))

    def _maybe_sweep(self, ts: float) -> None:
        # Sweep a few times per TTL on event time, not per event: eviction is O(table).
        if self.ttl_s is None:
            return
        if self._next_sweep_ts is None:
            self._next_sweep_ts = ts + self.ttl_s / 4
        if ts < self._next_sweep_ts:
            return
        cutoff = ts - self.ttl_s
        self.evicted += self._users.evict_older_than(cutoff) + self._items.evict_older_than(cutoff)
        self._pending = {key: v for key, v in self._pending.items() if v[1] >= cutoff}
        self._next_sweep_ts = ts + self.ttl_s / 4

    def forget_user(self, user_id: str) -> None:
        """Erase everything learned about one user (its vector and admission count)."""
        self._users.remove(user_id)
        self._pending.pop(("u", user_id), None)

    def knows_user(self, user_id: str) -> bool:
        return user_id in self._users.index or ("u", user_id) in self._pending

    def user_vector(self, user_id: str) -> list[float] | None:
        """The user's vector as plain floats (for the ``user-state`` message), or None."""
        row = self._users.index.get(user_id)
        return None if row is None else self._users.vectors[row].tolist()

    def set_user_vector(self, user_id: str, vector: Sequence[float], ts: float = 0.0) -> None:
        """Restore a user's vector (from ``user-state``); bypasses admission: it was admitted."""
        values = np.asarray(vector, dtype=np.float32)
        if values.shape != (self.current_dim,):
            raise ValueError(f"vector has shape {values.shape}, expected ({self.current_dim},)")
        row = self._users.index.get(user_id)
        if row is None:
            row = self._users.add(user_id, ts, values)
        self._users.vectors[row] = values

    def adopt_item_table(self, item_ids: Sequence[str], vectors: np.ndarray,
                         ridge: float = 1e-2) -> dict[str, int]:
        """Take a published deep model's item vectors, keeping what users learned.

        On the items both tables know, ridge regression fits ``old ≈ new @ A`` and
        ``new ≈ old @ B``. Users move to ``A @ u`` so ``u · v_old ≈ (A u) · v_new``; items
        only we know move to ``v_old @ B`` (they stay recommendable); the rest take the
        deep vectors. Item biases are kept. Too little overlap resets users to zero.
        """
        fresh = self._rng.normal(0.0, self.init_scale, (self._items.high, np.shape(vectors)[1]))
        return adopt_table(self._users, self._items, item_ids, vectors, ridge, fresh)

    # -- state as plain data (snapshots) ----------------------------------------------------
    def to_state(self) -> EmbeddingsState:
        pending = list(self._pending.items())
        return EmbeddingsState(
            dim=self.dim, lr=self.lr, l2=self.l2, n_negatives=self.n_negatives,
            negative_sampling=self.negative_sampling, loss=self.loss,
            init_scale=self.init_scale, admission_threshold=self.admission_threshold,
            ttl_s=self.ttl_s, popularity_window=self.popularity_window,
            pool_size=self.pool_size, seed=self.seed, rng=RngState.of(self._rng),
            users=self._users.to_state(), items=self._items.to_state(),
            pending_kinds=[kind for (kind, _), _ in pending],
            pending_ids=[key for (_, key), _ in pending],
            pending_counts=ArrayState.of(np.array([n for _, (n, _) in pending], np.int64)),
            pending_ts=ArrayState.of(np.array([ts for _, (_, ts) in pending], np.float64)),
            next_sweep_ts=self._next_sweep_ts, admitted=self.admitted, evicted=self.evicted,
            rejected_admission=self.rejected_admission, pool=ArrayState.of(self._pool),
            pool_pos=self._pool_pos, recent=ArrayState.of(self._recent),
            recent_n=self._recent_n)

    @classmethod
    def from_state(cls, state: EmbeddingsState) -> "OnlineUserEmbeddings":
        """The learner ``to_state`` exported; ``StateError`` (a ``ValueError``) if inconsistent."""
        for name in ("lr", "l2", "init_scale"):
            step_size(getattr(state, name), name)
        require(state.init_scale >= 0, "init_scale must not be negative")
        require(state.ttl_s is None or (math.isfinite(state.ttl_s) and state.ttl_s > 0),
                "ttl_s must be None or positive")
        require(state.next_sweep_ts is None or math.isfinite(state.next_sweep_ts),
                "next_sweep_ts must be finite")
        recent = state.recent.to_array("<i8", ndim=1)
        count(state.popularity_window, "popularity_window", 1)
        require(recent.shape == (state.popularity_window,), "recent positives of the wrong size")
        pool = state.pool.to_array("<f8", ndim=1, finite=True)
        require(pool.size == 0 or (float(pool.min()) >= 0.0 and float(pool.max()) < 1.0),
                "negative-sampling pool outside [0, 1)")
        users, items = (EmbeddingTable.from_state(state.users),
                        EmbeddingTable.from_state(state.items))
        require(users.vectors.shape[1] == items.vectors.shape[1],
                "user and item vectors of different sizes")
        model = cls(dim=count(state.dim, "dim", 1, 4096), lr=state.lr, l2=state.l2,
                    n_negatives=count(state.n_negatives, "n_negatives", 0, 1024),
                    negative_sampling=state.negative_sampling, loss=state.loss,
                    init_scale=state.init_scale,
                    admission_threshold=count(state.admission_threshold,
                                              "admission_threshold", 1, 1 << 62),
                    ttl_s=state.ttl_s, popularity_window=1,
                    pool_size=count(state.pool_size, "pool_size", 1, 1 << 20), seed=state.seed)
        model.popularity_window, model._recent = state.popularity_window, recent
        model._rng, model._users, model._items = state.rng.to_rng(), users, items
        # Recent positives are item slots the negatives are drawn from.
        slots(recent, max(items.high, 1), "recent positives")
        model._recent_n = count(state.recent_n, "recent_n", 0, 1 << 62)
        model._pool, model._pool_pos = pool, count(state.pool_pos, "pool_pos", 0, pool.shape[0])
        pending_counts = state.pending_counts.to_array("<i8", ndim=1)
        pending_ts = state.pending_ts.to_array("<f8", ndim=1, finite=True)
        n_pending = len(state.pending_ids)
        require(len(state.pending_kinds) == n_pending == pending_counts.shape[0]
                == pending_ts.shape[0], "pending sightings of different lengths")
        require(set(state.pending_kinds) <= {"u", "i"}, "pending sighting of an unknown kind")
        require(bool((pending_counts >= 0).all()), "negative pending sighting count")
        model._pending = {(kind, key): (n, ts) for kind, key, n, ts in zip(
            state.pending_kinds, state.pending_ids, pending_counts.tolist(), pending_ts.tolist())}
        require(len(model._pending) == n_pending, "a pending sighting repeats")
        model._next_sweep_ts = state.next_sweep_ts
        model.admitted = count(state.admitted, "admitted", 0, 1 << 62)
        model.evicted = count(state.evicted, "evicted", 0, 1 << 62)
        model.rejected_admission = count(state.rejected_admission, "rejected_admission", 0,
                                         1 << 62)
        return model

    # -- learning --------------------------------------------------------------------------
    def learn_one(self, event: ClickEvent) -> None:
        """Learn one event: admit its ids, then one SGD step on positive + negatives."""
        self.learn_many([event])

    def learn_many(self, events: Iterable[ClickEvent]) -> None:
        """Learn a micro-batch: ``learn_one`` in a loop for users, batched for items.

        A user's events are applied in order, each seeing the user vector the previous one
        left. Item vectors are read as of the start of the chunk and their gradients summed
        and applied once at its end: a chunk is short, and this is what makes it fast.
        """
        users: list[int] = []
        items: list[int] = []
        positives: list[int] = []
        for event in events:
            user, item = self._admit(event.user_id, event.item_id, event.ts)
            if item >= 0:
                positives.append(item)
                if user >= 0:
                    users.append(user)
                    items.append(item)
        if positives:
            self._remember_positive(np.asarray(positives, dtype=np.int64))
        self.learn_indexed(np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64))

    def learn_indexed(self, users: np.ndarray, items: np.ndarray) -> None:
        """Micro-batched SGD on already-admitted rows (see ``learn_many``).

        Events go into rounds where each user appears at most once (the k-th event of a
        user goes to round k). A round updates its users' vectors at once; item gradients
        wait for the end of the chunk. ML-100K chunks of 128 need ~77 rounds (users rate
        in bursts), so a round is kept to a dozen small numpy calls.
        """
        n = users.shape[0]
        if n == 0:
            return
        by_round, bounds = rounds(users)
        if by_round is not None:
            users, items = users[by_round], items[by_round]
        negatives = self._draw_negatives(n)
        candidates = np.concatenate([items[:, None], negatives], axis=1)  # (B, 1 + n)
        v = self._items.vectors[candidates]                               # (B, 1 + n, d)
        bias = self._items.bias[candidates]
        # A negative that is the positive itself (or a dead slot) teaches nothing wrong.
        useful = ((negatives != items[:, None]) & self._items.alive[negatives]).astype(np.float32)
        grads = np.empty(candidates.shape, dtype=np.float32)
        seen = np.empty((n, v.shape[2]), dtype=np.float32)  # each event's user vector
        table, softmax = self._users.vectors, self.loss == "softmax"
        lr, l2 = np.float32(self.lr), np.float32(self.l2)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            rows, vr = users[lo:hi], v[lo:hi]
            u = seen[lo:hi] = table[rows]
            scores = np.matmul(vr, u[:, :, None])[:, :, 0] + bias[lo:hi]
            if softmax:
                grad = np.exp(scores - scores.max(axis=1, keepdims=True))
                grad /= grad.sum(axis=1, keepdims=True)
            else:
                grad = 1.0 / (1.0 + np.exp(-np.clip(scores, -30.0, 30.0)))
            grad[:, 0] -= 1.0
            grad[:, 1:] *= useful[lo:hi]
            grads[lo:hi] = grad
            # users are unique within a round, so their rows can be written back directly.
            table[rows] = u - lr * (np.matmul(grad[:, None, :], vr)[:, 0, :] + l2 * u)
        self._items.step(candidates.ravel(), (grads[:, :, None] * seen[:, None, :] + l2 * v)
                         .reshape(-1, v.shape[2]), grads.ravel(), lr)

    # -- negatives -------------------------------------------------------------------------
    def _draw_negatives(self, rows: int) -> np.ndarray:
        """``(rows, n_negatives)`` item slots from the pre-drawn pool of uniforms."""
        need = rows * self.n_negatives
        if self._pool_pos + need > self._pool.shape[0]:
            self._pool = self._rng.random(max(self.pool_size, need))
            self._pool_pos = 0
        uniforms = self._pool[self._pool_pos:self._pool_pos + need]
        self._pool_pos += need
        if self.negative_sampling == "popularity" and self._recent_n:
            size = min(self._recent_n, self.popularity_window)
            picks = self._recent[(uniforms * size).astype(np.int64)]
        else:
            picks = (uniforms * max(self._items.high, 1)).astype(np.int64)
        return picks.reshape(rows, self.n_negatives)

    def _remember_positive(self, items: np.ndarray) -> None:
        if self.negative_sampling != "popularity":
            return
        positions = (self._recent_n + np.arange(items.shape[0])) % self.popularity_window
        self._recent[positions] = items
        self._recent_n += items.shape[0]

    # -- ranking ---------------------------------------------------------------------------
    def score_all(self, user_id: str, vector: Sequence[float] | None = None) -> np.ndarray:
        """Scores of every item slot for ``user_id`` (dead slots ``-inf``); a fresh array.

        ``vector`` (the user's vector from a fresher source, ``user-state``) is used instead
        of the table's; ``ValueError`` if its size is not ``current_dim``. An unknown user
        without one gets the item biases: learned popularity, and no state is created.
        """
        n = self._items.high
        scores = self._items.bias[:n].astype(np.float64)
        row = self._users.index.get(user_id)
        user = None if row is None else self._users.vectors[row]
        if vector is not None:
            # float32 as the table stores it: the same product as if it had been written in.
            user = np.asarray(vector, dtype=np.float32)
            if user.shape != (self.current_dim,):
                raise ValueError(f"vector has shape {user.shape}, expected ({self.current_dim},)")
        if user is not None:
            scores += self._items.vectors[:n] @ user
        scores[~self._items.alive[:n]] = -np.inf
        return scores

    def score_items(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        """Scores of the given items (``nan`` for items without a vector)."""
        slots = np.array([self._items.index.get(i, -1) for i in item_ids], dtype=np.int64)
        known = slots >= 0
        out = np.full(len(item_ids), np.nan)
        if known.any():
            out[known] = self.score_all(user_id)[slots[known]]
        return out

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = (), *,
                  vector: Sequence[float] | None = None) -> Ranking:
        """Top-``k`` items by ``u · v + b``, never mutating the model.

        ``vector``: rank with this user vector instead of the table's (see ``score_all``).
        """
        scores = self.score_all(user_id, vector)
        for item in exclude:
            slot = self._items.index.get(item)
            if slot is not None:
                scores[slot] = -np.inf
        return [(self._items.ids[i], float(scores[i])) for i in top_k(scores, k)]

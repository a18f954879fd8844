"""A synthetic click stream whose ground truth is known, for tests, demos and benchmarks.

Users have latent taste vectors, items have latent vectors and a Zipf-like popularity.
Each event picks a user (activity is skewed: a few users are very active), then an item
from ``softmax(taste_strength * taste·item + log popularity)``. Because we know the
generating model, ``ground_truth_top`` says which items a user truly prefers, so a
recommender can be scored against the truth rather than against noisy held-out clicks.
With ``drift_at`` every taste is rotated from that event on, which drift detectors and
retraining must notice. Everything is drawn from one ``numpy`` generator seeded by ``seed``:
the same arguments always give the same stream.

>>> stream = SyntheticStream(n_users=20, n_items=50, n_events=100, seed=1)
>>> events = list(stream.events())
>>> len(events), events[0].user_id.startswith("u"), events[0].item_id.startswith("i")
(100, True, True)
>>> all(a.ts <= b.ts for a, b in zip(events, events[1:]))
True
>>> len(stream.ground_truth_top("u3", k=5))
5
"""

from __future__ import annotations

from functools import cached_property
from typing import Collection, Iterator

import msgspec
import numpy as np

from streamrec.events import ClickEvent, encode_click

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")
EVENT_TYPE_SHARES = (0.60, 0.32, 0.06, 0.02)
MALFORMED_KINDS = ("bad_json", "missing_field", "wrong_type", "oversized")
# Probability tables are built for this many (user, item) cells at a time: bounds memory
# (16 MB of float64) whatever the catalogue size.
_CELLS_PER_CHUNK = 2_000_000
# Above this many (active user, item) cells exact sampling gets slow (it is O(users x items));
# beyond it items are drawn by sampling-importance-resampling from popularity instead.
_EXACT_CELLS_LIMIT = 50_000_000
_SIR_CANDIDATES = 128


class SyntheticStream:
    """A reproducible click stream drawn from a latent-factor model with popularity.

    Parameters
    ----------
    n_users, n_items, n_events
        Sizes. Ids are ``"u0".."u{n_users-1}"`` and ``"i0".."i{n_items-1}"``.
    dim
        Dimension of the latent taste and item vectors.
    drift_at
        Event index from which every user's taste is rotated by a random orthogonal
        matrix (``None``: no drift).
    seed
        Seed of the single random generator; the whole stream is a function of it.
    start_ts, mean_gap_s
        Event time of the first event and mean gap between events (exponential gaps), in
        epoch seconds: event order and event-time order are the same.
    taste_strength
        Weight of ``taste·item`` against ``log popularity`` in the choice logits.
    popularity_exponent, activity_exponent
        Zipf exponents of item popularity and of user activity.
    malformed_rate
        Share of ``raw_payloads()`` that are bad (for dead-letter tests); in ``[0, 1)``.
    max_event_bytes
        Size limit the oversized bad payloads exceed.

    Notes
    -----
    Sampling is exact while (active users x items) stays under 50 million cells (~1 s);
    above that, items are drawn approximately (importance resampling of 128 popularity
    candidates), so huge catalogues still generate quickly.
    """

    def __init__(self, n_users: int, n_items: int, n_events: int, dim: int = 8,
                 drift_at: int | None = None, seed: int = 0,
                 start_ts: float = 1_700_000_000.0, mean_gap_s: float = 1.0,
                 taste_strength: float = 3.0, popularity_exponent: float = 1.0,
                 activity_exponent: float = 0.8, malformed_rate: float = 0.0,
                 max_event_bytes: int = 64 * 1024) -> None:
        for name, size in (("n_users", n_users), ("n_items", n_items), ("dim", dim)):
            if size < 1:
                raise ValueError(f"{name} must be >= 1, got {size}")
        if n_events < 0:
            raise ValueError(f"n_events must be >= 0, got {n_events}")
        if drift_at is not None and drift_at < 0:
            raise ValueError(f"drift_at must be >= 0, got {drift_at}")
        if not 0.0 <= malformed_rate < 1.0:
            raise ValueError(f"malformed_rate must be in [0, 1), got {malformed_rate}")
        if mean_gap_s < 0:
            raise ValueError(f"mean_gap_s must be >= 0, got {mean_gap_s}")
        self.n_users = n_users
        self.n_items = n_items
        self.n_events = n_events
        self.dim = dim
        self.drift_at = drift_at
        self.seed = seed
        self.start_ts = start_ts
        self.mean_gap_s = mean_gap_s
        self.taste_strength = taste_strength
        self.popularity_exponent = popularity_exponent
        self.activity_exponent = activity_exponent
        self.malformed_rate = malformed_rate
        self.max_event_bytes = max_event_bytes

        rng = np.random.default_rng(seed)
        # Latent vectors scaled so a taste·item dot product has unit variance.
        scale = dim ** -0.25
        self.tastes = rng.standard_normal((n_users, dim)) * scale
        self.item_vectors = rng.standard_normal((n_items, dim)) * scale
        rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        self.drifted_tastes = self.tastes @ rotation
        self.popularity = _zipf_weights(n_items, popularity_exponent, rng)
        self.activity = _zipf_weights(n_users, activity_exponent, rng)
        self._rng = rng  # the stream below is drawn lazily, from the same generator

    # -- the stream -----------------------------------------------------------------------

    @cached_property
    def _draws(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(user index, item index, type index, ts) per event, drawn once, vectorised."""
        rng, n = self._rng, self.n_events
        users = rng.choice(self.n_users, size=n, p=self.activity)
        uniforms = rng.random(n)
        types = rng.choice(len(EVENT_TYPES), size=n, p=EVENT_TYPE_SHARES)
        gaps = rng.exponential(self.mean_gap_s, size=n) if self.mean_gap_s else np.zeros(n)
        if n:
            gaps[0] = 0.0
        ts = np.round(self.start_ts + np.cumsum(gaps), 3)
        drifted = np.zeros(n, dtype=bool)
        if self.drift_at is not None:
            drifted[self.drift_at:] = True
        items = np.empty(n, dtype=np.int64)
        for phase in (False, True):
            mask = drifted == phase
            if mask.any():
                items[mask] = self._sample_items(users[mask], uniforms[mask], phase)
        return users, items, types, ts

    def _sample_items(self, users: np.ndarray, uniforms: np.ndarray, drifted: bool) -> np.ndarray:
        # Inverse-CDF sampling per user, vectorised over a chunk of users: row r of the CDF
        # table is shifted by r so one searchsorted over the flattened table serves all rows.
        active, rows = np.unique(users, return_inverse=True)
        if len(active) * self.n_items > _EXACT_CELLS_LIMIT:
            return self._sample_items_approx(users, drifted)
        out = np.empty(len(users), dtype=np.int64)
        chunk = max(1, _CELLS_PER_CHUNK // self.n_items)
        for start in range(0, len(active), chunk):
            block = active[start:start + chunk]
            cdf = np.cumsum(self._probabilities(block, drifted), axis=1)
            cdf /= cdf[:, -1:]
            cdf += np.arange(len(block))[:, None]
            in_block = (rows >= start) & (rows < start + len(block))
            local = rows[in_block] - start
            flat = np.searchsorted(cdf.ravel(), local + uniforms[in_block], side="right")
            out[in_block] = np.minimum(flat - local * self.n_items, self.n_items - 1)
        return out

    def _sample_items_approx(self, users: np.ndarray, drifted: bool) -> np.ndarray:
        # Sampling-importance-resampling: candidates drawn from the popularity prior, one of
        # them kept by softmax(taste_strength * taste·item) (Gumbel-max). Approximate, but
        # O(events x candidates) instead of O(users x items) for huge catalogues.
        rng, m = self._rng, min(self.n_items, _SIR_CANDIDATES)
        tastes = self.drifted_tastes if drifted else self.tastes
        out = np.empty(len(users), dtype=np.int64)
        chunk = max(1, _CELLS_PER_CHUNK // (m * self.dim))
        popularity_cdf = np.cumsum(self.popularity)
        popularity_cdf /= popularity_cdf[-1]
        for start in range(0, len(users), chunk):
            block = users[start:start + chunk]
            candidates = np.minimum(np.searchsorted(
                popularity_cdf, rng.random((len(block), m)), side="right"), self.n_items - 1)
            affinity = np.matmul(self.item_vectors[candidates], tastes[block][:, :, None])[..., 0]
            affinity *= self.taste_strength
            affinity += rng.gumbel(size=affinity.shape)
            out[start:start + len(block)] = candidates[np.arange(len(block)),
                                                       affinity.argmax(axis=1)]
        return out

    def _probabilities(self, user_indices: np.ndarray, drifted: bool) -> np.ndarray:
        logits = self._logits(user_indices, drifted)
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        return logits

    def _logits(self, user_indices: np.ndarray, drifted: bool) -> np.ndarray:
        tastes = (self.drifted_tastes if drifted else self.tastes)[user_indices]
        return self.taste_strength * (tastes @ self.item_vectors.T) + np.log(self.popularity)

    def events(self) -> Iterator[ClickEvent]:
        """The ``n_events`` click events, in event-time order."""
        users, items, types, ts = self._draws
        for index, (u, i, t, stamp) in enumerate(
                zip(users.tolist(), items.tolist(), types.tolist(), ts.tolist())):
            yield ClickEvent(event_id=f"s{self.seed}-{index}", user_id=f"u{u}",
                             item_id=f"i{i}", type=EVENT_TYPES[t], ts=stamp)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[ClickEvent]:
        return self.events()

    def __len__(self) -> int:
        return self.n_events

    # -- ground truth ---------------------------------------------------------------------

    def true_scores(self, user_id: str, at_event: int | None = None) -> np.ndarray:
        """Choice logits of every item for a user at event index ``at_event``.

        ``None`` means the end of the stream (after the drift, if any). Higher is more
        likely to be picked next; the softmax of these is the true next-item distribution.
        """
        index = self._user_index(user_id)
        if at_event is None:
            at_event = self.n_events
        drifted = self.drift_at is not None and at_event >= self.drift_at
        return self._logits(np.array([index]), drifted)[0]

    def ground_truth_top(self, user_id: str, k: int = 10, exclude: Collection[str] = (),
                         at_event: int | None = None) -> list[str]:
        """The ``k`` item ids the user truly prefers (highest logits), best first."""
        scores = self.true_scores(user_id, at_event).copy()
        for item_id in exclude:
            scores[self._item_index(item_id)] = -np.inf
        k = min(k, int(np.isfinite(scores).sum()))
        top = np.argsort(-scores, kind="stable")[:k]
        return [f"i{i}" for i in top.tolist()]

    def _user_index(self, user_id: str) -> int:
        return _parse_id(user_id, "u", self.n_users)

    def _item_index(self, item_id: str) -> int:
        return _parse_id(item_id, "i", self.n_items)

    # -- raw payloads, some malformed -----------------------------------------------------

    def raw_payloads(self) -> Iterator[tuple[bytes, bytes, bool]]:
        """``(key, value, is_valid)`` for every event, with bad payloads mixed in.

        Every valid event of ``events()`` appears once, in order; about ``malformed_rate``
        of all payloads are bad ones inserted between them, cycling through bad JSON, a
        missing field, a wrongly typed field and an oversized payload. Deterministic by
        ``seed`` (drawn from a separate generator, so the events are the same as without).
        """
        rate = self.malformed_rate
        n_bad = int(round(self.n_events * rate / (1.0 - rate))) if rate else 0
        total = self.n_events + n_bad
        rng = np.random.default_rng([self.seed, 1])
        bad_slots = np.zeros(total, dtype=bool)
        bad_slots[rng.choice(total, size=n_bad, replace=False)] = True
        kinds = rng.integers(0, len(MALFORMED_KINDS), size=n_bad).tolist()
        bad_users = rng.integers(0, self.n_users, size=n_bad).tolist()
        events = self.events()
        bad_index = 0
        for slot in bad_slots.tolist():
            if slot:
                user = f"u{bad_users[bad_index]}"
                value = self._malformed(MALFORMED_KINDS[kinds[bad_index]], user, bad_index)
                bad_index += 1
                yield user.encode(), value, False
            else:
                event = next(events)
                yield event.user_id.encode(), encode_click(event), True

    def _malformed(self, kind: str, user: str, index: int) -> bytes:
        base = {"event_id": f"bad-{self.seed}-{index}", "user_id": user, "item_id": "i0",
                "type": "click", "ts": self.start_ts}
        if kind == "bad_json":
            return msgspec.json.encode(base)[:-7]  # truncated mid-object
        if kind == "missing_field":
            del base["item_id"]
        elif kind == "wrong_type":
            base["ts"] = "yesterday"
        else:  # oversized: valid JSON, too big to accept
            base["context"] = {"padding": "x" * self.max_event_bytes}
        return msgspec.json.encode(base)


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf-like probabilities ``1/rank**exponent``, ranks shuffled over the ids."""
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    rng.shuffle(weights)
    return weights / weights.sum()


def _parse_id(text: str, prefix: str, size: int) -> int:
    if not text.startswith(prefix) or not text[len(prefix):].isdigit():
        raise KeyError(f"{text!r} is not a synthetic id like '{prefix}0'")
    index = int(text[len(prefix):])
    if index >= size:
        raise KeyError(f"{text!r} is out of range (0..{size - 1})")
    return index

"""Online factorization machines: river's ``FMClassifier`` as reference, numpy for the hot path.

Both backends implement :class:`OnlineFM` on river-style feature dicts (a string value is a
one-hot ``"field_value"``, a number is a weighted feature), so they can be swapped and
compared on the same stream. ``NumpyFM`` learns micro-batches in a few vectorised steps.
It sums the gradient of every feature over the batch and divides by ``sqrt(count)``: a
feature of a low-cardinality field (a device type, the intercept) shows up in most rows
of a batch, and its plain summed gradient would be hundreds of single steps at once and
blow up, while a rare feature keeps its ordinary SGD step.
"""

from __future__ import annotations

import zlib
from typing import Mapping, Protocol, Sequence

import msgspec
import numpy as np

from streamrec.online_models.learner_state import (MAX_LEARNED_MAGNITUDE, ArrayState, RngState,
                                                   count, finite, require, slots, step_size)

Features = Mapping[str, "str | float"]


class NumpyFMState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``NumpyFM`` as plain data: hyper-parameters, then learned state."""

    n_factors: int
    lr: float
    l2: float
    init_scale: float
    count_power: float
    n_buckets: int | None
    seed: int
    rng: RngState
    index_keys: list[str | tuple[str, str]]  # features in first-seen order...
    index_rows: ArrayState  # ...and their rows (int64)
    weights: ArrayState
    latents: ArrayState
    intercept: float
    size: int


def pack_rows(flat_rows: Sequence[int], flat_values: Sequence[float], lengths: Sequence[int]
              ) -> tuple[np.ndarray, np.ndarray]:
    """Ragged rows (concatenated, with each row's length) as padded ``(rows, values)``.

    Padding is row 0 with value 0, which ``NumpyFM`` keeps inert.
    """
    sizes = np.asarray(lengths, dtype=np.int64)
    rows = np.zeros((sizes.shape[0], int(sizes.max(initial=0))), dtype=np.int64)
    values = np.zeros(rows.shape, dtype=np.float32)
    which = np.repeat(np.arange(sizes.shape[0]), sizes)
    column = np.arange(which.shape[0]) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    rows[which, column] = flat_rows
    values[which, column] = flat_values
    return rows, values


class OnlineFM(Protocol):
    """A binary factorization machine learned online from feature dicts."""

    def learn_one(self, x: Features, y: bool) -> None: ...

    def learn_many(self, X: Sequence[Features], y: Sequence[bool]) -> None: ...

    def predict_proba_one(self, x: Features) -> float: ...

    def predict_many(self, X: Sequence[Features]) -> np.ndarray: ...


class RiverFM:
    """river's ``facto.FMClassifier`` behind :class:`OnlineFM`: the reference, one row at a time.

    Examples
    --------
    >>> fm = RiverFM(n_factors=4, lr=0.05, seed=1)
    >>> for _ in range(50):
    ...     fm.learn_one({"user": "a", "item": "x"}, True)
    ...     fm.learn_one({"user": "a", "item": "y"}, False)
    >>> fm.predict_proba_one({"user": "a", "item": "x"}) > 0.5
    True
    """

    def __init__(self, n_factors: int = 16, lr: float = 0.05, l2: float = 0.0,
                 init_scale: float = 0.1, seed: int = 0) -> None:
        from river import facto, optim

        self.n_factors, self.lr, self.l2 = n_factors, lr, l2
        self.init_scale, self.seed = init_scale, seed
        self.model = facto.FMClassifier(
            n_factors=n_factors, weight_optimizer=optim.SGD(lr), latent_optimizer=optim.SGD(lr),
            intercept_lr=lr, l2_weight=l2, l2_latent=l2, seed=seed,
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=init_scale, seed=seed))

    def learn_one(self, x: Features, y: bool) -> None:
        self.model.learn_one(dict(x), bool(y))

    def learn_many(self, X: Sequence[Features], y: Sequence[bool]) -> None:
        for xi, yi in zip(X, y):
            self.model.learn_one(dict(xi), bool(yi))

    def predict_proba_one(self, x: Features) -> float:
        # river reads latents through a defaultdict: an unseen feature would be inserted.
        known = {f: v for f, v in x.items()
                 if (f"{f}_{v}" if isinstance(v, str) else f) in self.model.latents}
        return float(self.model.predict_proba_one(known)[True])

    def predict_many(self, X: Sequence[Features]) -> np.ndarray:
        return np.array([self.predict_proba_one(x) for x in X])


class NumpyFM:
    """A vectorised factorization machine with micro-batch SGD.

    Parameters
    ----------
    n_factors, lr, l2, init_scale
        As river's ``FMClassifier`` (``lr`` for weights, latents and intercept).
    count_power
        A feature's gradient summed over a micro-batch is divided by ``count ** count_power``:
        0.5 damps features present in many rows; 1.0 averages; 0.0 is the plain sum.
    n_buckets
        ``None``: features get indices on first sight (a growing table). An int: features
        are hashed (crc32, stable across processes) into that many buckets.
    seed
        The only source of randomness (latent initialisation).

    Examples
    --------
    >>> fm = NumpyFM(n_factors=4, lr=0.05, seed=1)
    >>> X = [{"user": "a", "item": "x"}, {"user": "a", "item": "y"}] * 50
    >>> fm.learn_many(X, [True, False] * 50)
    >>> fm.predict_proba_one({"user": "a", "item": "x"}) > 0.5
    True
    """

    def __init__(self, n_factors: int = 16, lr: float = 0.05, l2: float = 0.0,
                 init_scale: float = 0.1, count_power: float = 0.5,
                 n_buckets: int | None = None, seed: int = 0) -> None:
        self.n_factors, self.lr, self.l2, self.init_scale = n_factors, lr, l2, init_scale
        self.count_power = count_power
        self.n_buckets, self.seed = n_buckets, seed
        self._rng = np.random.default_rng(seed)
        self._index: dict[str | tuple[str, str], int] = {}
        size = n_buckets + 1 if n_buckets else 1024
        # Row 0 is padding: index 0 with value 0 fills rows with fewer features.
        self.weights = np.zeros(size, dtype=np.float32)
        self.latents = self._rng.normal(0.0, init_scale, (size, n_factors)).astype(np.float32)
        self.latents[0] = 0.0
        self.intercept = 0.0
        self._size = 1 if n_buckets is None else size

    # -- state as plain data (snapshots) ----------------------------------------------------
    def to_state(self) -> NumpyFMState:
        return NumpyFMState(
            n_factors=self.n_factors, lr=self.lr, l2=self.l2, init_scale=self.init_scale,
            count_power=self.count_power, n_buckets=self.n_buckets, seed=self.seed,
            rng=RngState.of(self._rng), index_keys=list(self._index),
            index_rows=ArrayState.of(np.fromiter(self._index.values(), np.int64,
                                                 len(self._index))),
            weights=ArrayState.of(self.weights), latents=ArrayState.of(self.latents),
            intercept=self.intercept, size=self._size)

    @classmethod
    def from_state(cls, state: NumpyFMState) -> "NumpyFM":
        """The FM ``to_state`` exported; ``StateError`` (a ``ValueError``) if inconsistent."""
        for name in ("lr", "l2", "init_scale"):
            step_size(getattr(state, name), name)
        for name in ("count_power", "intercept"):
            finite(getattr(state, name), name)
        require(state.init_scale >= 0, "init_scale must not be negative")
        require(abs(state.intercept) <= MAX_LEARNED_MAGNITUDE,
                f"intercept of magnitude above {MAX_LEARNED_MAGNITUDE:g}")
        weights = state.weights.to_array("<f4", ndim=1, max_abs=MAX_LEARNED_MAGNITUDE)
        latents = state.latents.to_array("<f4", ndim=2, max_abs=MAX_LEARNED_MAGNITUDE)
        rows = weights.shape[0]
        require(latents.shape == (rows, count(state.n_factors, "n_factors", 1, 1024))
                and rows >= 1, "FM weights and latents of different shapes")
        if state.n_buckets is not None:  # hashed: a fixed table, no index
            require(state.n_buckets >= 1 and rows == state.n_buckets + 1 == state.size
                    and not state.index_keys, "hashed FM of an inconsistent size")
        require(1 <= state.size <= rows, "FM size out of range")
        index_rows = slots(state.index_rows.to_array("<i8", ndim=1), state.size, "FM index")
        require(index_rows.shape[0] == len(state.index_keys), "FM index of different lengths")
        require(not index_rows.size or int(index_rows.min()) >= 1, "a feature uses padding row 0")
        # Built with no table of its own (the learned arrays replace it, and the rng state
        # is restored, so the draws made here do not count).
        fm = cls(n_factors=state.n_factors, lr=state.lr, l2=state.l2, init_scale=0.0,
                 count_power=state.count_power, n_buckets=None, seed=0)
        fm.init_scale, fm.n_buckets, fm.seed = state.init_scale, state.n_buckets, state.seed
        fm._rng = state.rng.to_rng()
        fm._index = dict(zip(state.index_keys, index_rows.tolist()))
        require(len(fm._index) == len(state.index_keys), "FM index repeats a feature")
        fm.weights, fm.latents = weights, latents
        fm.intercept, fm._size = state.intercept, state.size
        return fm

    # -- encoding --------------------------------------------------------------------------
    def feature_index(self, key: str | tuple[str, str], grow: bool = True) -> int:
        """Row of a feature: ``(field, value)`` for a categorical, ``field`` for a number.

        0 (the inert padding row) for an unknown feature when ``grow`` is False.
        """
        if self.n_buckets:
            text = key if isinstance(key, str) else f"{key[0]}_{key[1]}"  # river's naming
            return 1 + zlib.crc32(text.encode()) % self.n_buckets
        row = self._index.get(key)
        if row is None:
            if not grow:
                return 0
            row = self._index[key] = self._size
            self._size += 1
            if row >= self.weights.shape[0]:  # double; new latents drawn from the seeded rng
                extra = self._rng.normal(0.0, self.init_scale, self.latents.shape)
                self.latents = np.concatenate([self.latents, extra.astype(np.float32)])
                self.weights = np.concatenate([self.weights, np.zeros_like(self.weights)])
        return row

    def forget_feature(self, key: str | tuple[str, str]) -> None:
        """Erase one feature's parameters (privacy); its row is never reused by another."""
        row = self._index.pop(key, None) if not self.n_buckets else None
        if row is not None:
            self.weights[row] = 0.0
            self.latents[row] = 0.0

    def knows_feature(self, key: str | tuple[str, str]) -> bool:
        return key in self._index

    def encode(self, X: Sequence[Features], grow: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, values)``, both ``(len(X), max features)``, padded with row 0 / value 0."""
        flat_rows: list[int] = []
        flat_values: list[float] = []
        lengths: list[int] = []
        cached = {} if self.n_buckets else self._index  # plain dict lookups on the hot path
        index = self.feature_index
        for x in X:
            lengths.append(len(x))
            for field, value in x.items():
                key: str | tuple[str, str]
                if isinstance(value, str):
                    key, value = (field, value), 1.0
                else:
                    key = field
                row = cached.get(key)
                flat_rows.append(index(key, grow) if row is None else row)
                flat_values.append(value)
        return pack_rows(flat_rows, flat_values, lengths)

    # -- OnlineFM --------------------------------------------------------------------------
    def learn_one(self, x: Features, y: bool) -> None:
        self.learn_many([x], [y])

    def learn_many(self, X: Sequence[Features], y: Sequence[bool]) -> None:
        rows, values = self.encode(X)
        self.learn_encoded(rows, values, np.asarray(y, dtype=np.float32))

    def predict_proba_one(self, x: Features) -> float:
        return float(self.predict_many([x])[0])

    def predict_many(self, X: Sequence[Features]) -> np.ndarray:
        return self.predict_encoded(*self.encode(X, grow=False))

    # -- encoded fast path -----------------------------------------------------------------
    def _forward(self, rows: np.ndarray, values: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v = self.latents[rows]                                   # (B, F, k)
        vx = v * values[:, :, None]
        total = vx.sum(axis=1)                                   # (B, k)
        pairs = 0.5 * ((total * total).sum(axis=1) - (vx * vx).sum(axis=(1, 2)))
        raw = self.intercept + (self.weights[rows] * values).sum(axis=1) + pairs
        return raw, v, total

    def predict_encoded(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        raw, _, _ = self._forward(rows, values)
        return 1.0 / (1.0 + np.exp(-np.clip(raw, -30.0, 30.0)))

    def learn_encoded(self, rows: np.ndarray, values: np.ndarray, y: np.ndarray) -> np.ndarray:
        """One SGD step on a micro-batch; returns the probabilities *before* the step.

        Per-feature gradients are summed over the batch and divided by
        ``count ** count_power``. The returned predictions give progressive validation
        for free (one forward pass serves both).
        """
        if rows.shape[0] == 0:
            return np.empty(0)
        raw, v, total = self._forward(rows, values)
        proba = 1.0 / (1.0 + np.exp(-np.clip(raw, -30.0, 30.0)))
        g = (proba - y).astype(np.float32)  # d logloss / d raw
        gx = g[:, None] * values                                 # (B, F)
        grad_v = gx[:, :, None] * (total[:, None, :] - v * values[:, :, None])
        grad_w = gx
        if self.l2:
            grad_v = grad_v + self.l2 * v
            grad_w = grad_w + self.l2 * self.weights[rows]
        flat = rows.ravel()
        order = np.argsort(flat, kind="stable")
        sorted_rows = flat[order]
        starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
        unique = sorted_rows[starts]
        counts = np.diff(np.r_[starts, flat.shape[0]]).astype(np.float32)
        scale = self.lr / counts ** np.float32(self.count_power)
        sum_w = np.add.reduceat(grad_w.ravel()[order], starts)
        sum_v = np.add.reduceat(grad_v.reshape(-1, self.n_factors)[order], starts, axis=0)
        self.weights[unique] -= scale * sum_w
        self.latents[unique] -= scale[:, None] * sum_v
        self.weights[0], self.latents[0] = 0.0, 0.0  # padding stays inert
        self.intercept -= float(self.lr * g.sum() / g.shape[0] ** self.count_power)
        return proba

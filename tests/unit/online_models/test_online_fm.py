"""OnlineFM backends: parity of numpy and river on one stream, encoding, hashing."""

from __future__ import annotations

import pickle

import numpy as np

from streamrec.online_models.fm import NumpyFM, RiverFM


def stream(n_events: int = 3000, seed: int = 0) -> tuple[list[dict], list[bool]]:
    """Users like one of three item groups; each event yields a positive and two negatives."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for _ in range(n_events):
        user = int(rng.integers(60))
        device = ["web", "ios", "android"][user % 3]
        liked = f"i{(user % 3) * 10 + int(rng.integers(10))}"
        for item, label in [(liked, True)] + [(f"i{int(rng.integers(30))}", False)
                                             for _ in range(2)]:
            X.append({"user": f"u{user}", "item": item, "device": device, "price": 0.5})
            y.append(label and True)
    return X, y


def auc(y: np.ndarray, p: np.ndarray) -> float:
    pos, neg = p[y], p[~y]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def progressive(fm, X, y, batch: int) -> np.ndarray:
    out = np.empty(len(X))
    for start in range(0, len(X), batch):
        out[start:start + batch] = fm.predict_many(X[start:start + batch])
        fm.learn_many(X[start:start + batch], y[start:start + batch])
    return out


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(np.where(y, np.log(p), np.log(1 - p))))


def test_numpy_and_river_agree_on_the_same_stream():
    X, y = stream()
    labels = np.array(y)
    river = progressive(RiverFM(n_factors=8, lr=0.02, seed=1), X, y, 1)
    numpy = progressive(NumpyFM(n_factors=8, lr=0.02, seed=1), X, y, 16)
    tail = slice(len(X) // 2, None)
    river_auc, numpy_auc = auc(labels[tail], river[tail]), auc(labels[tail], numpy[tail])
    assert river_auc > 0.75 and numpy_auc > 0.75
    assert abs(river_auc - numpy_auc) < 0.01
    # The intercept sees every row, so sqrt-count damping calibrates it more slowly than
    # river's per-row steps: log-loss lags a little on this short stream.
    assert abs(log_loss(labels[tail], river[tail]) - log_loss(labels[tail], numpy[tail])) < 0.07


def test_one_row_step_equals_rivers_update():
    # With one row per step every count is 1: the numpy update is river's SGD exactly.
    x = {"user": "u1", "item": "i1", "price": 2.0}
    river, numpy = RiverFM(n_factors=4, lr=0.1, seed=0), NumpyFM(n_factors=4, lr=0.1, seed=0)
    numpy.encode([x])
    for key, row in numpy._index.items():  # start numpy from river's (lazily drawn) latents
        name = f"{key[0]}_{key[1]}" if isinstance(key, tuple) else key
        numpy.latents[row] = river.model.latents[name]
    for label in (True, False, True, True):
        river.learn_one(x, label)
        numpy.learn_one(x, label)
        assert abs(numpy.predict_proba_one(x) - river.predict_proba_one(x)) < 1e-5


def test_unknown_features_are_ignored_and_predict_does_not_grow():
    fm = NumpyFM(n_factors=4, seed=0)
    fm.learn_many([{"user": "a", "item": "x"}], [True])
    before = pickle.dumps(fm)
    p = fm.predict_proba_one({"user": "zzz", "item": "never", "new_numeric": 3.0})
    assert 0.0 < p < 1.0
    assert pickle.dumps(fm) == before
    river = RiverFM(n_factors=4, seed=0)
    river.learn_one({"user": "a", "item": "x"}, True)
    before = pickle.dumps(river)
    river.predict_proba_one({"user": "zzz", "item": "x"})
    assert pickle.dumps(river) == before


def test_hashed_features_learn_too():
    X, y = stream(1500)
    fm = NumpyFM(n_factors=8, lr=0.05, n_buckets=1 << 12, seed=2)
    p = progressive(fm, X, y, 64)
    tail = slice(len(X) // 2, None)
    assert auc(np.array(y)[tail], p[tail]) > 0.75
    assert fm.latents.shape[0] == (1 << 12) + 1


def test_sqrt_count_scaling_keeps_large_batches_stable():
    X, y = stream(2000)
    for power in (0.5, 1.0):
        fm = NumpyFM(n_factors=8, lr=0.1, count_power=power, seed=0)
        fm.learn_many(X, y)  # one batch of 6,000 rows
        assert np.isfinite(fm.latents).all() and np.isfinite(fm.intercept)


def test_determinism_and_pickle():
    X, y = stream(300)
    a, b = NumpyFM(seed=5), NumpyFM(seed=5)
    a.learn_many(X, y)
    b.learn_many(X, y)
    assert np.array_equal(a.predict_many(X[:50]), b.predict_many(X[:50]))
    c = pickle.loads(pickle.dumps(a))
    c.learn_many(X, y)
    a.learn_many(X, y)
    assert np.array_equal(a.predict_many(X[:50]), c.predict_many(X[:50]))

"""Serving with ONNX Runtime and numpy only: no torch, correct top-K, batch APIs."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap

import numpy as np

from streamrec.export.serving import OnnxSequenceModel
from streamrec.export.store import publish_message


def test_serving_never_imports_torch(published) -> None:
    store, manifest = published
    script = textwrap.dedent(f"""
        import sys
        from streamrec.export.serving import OnnxSequenceModel
        from streamrec.export.store import publish_message, load_verified
        import json
        model = OnnxSequenceModel(json.loads({json.dumps(publish_message(manifest, store.root))!r}))
        out = model.recommend([["i1", "i2"], []], 5, [{{"i1"}}, set()])
        assert len(out) == 2 and len(out[0]) == 5
        assert "torch" not in sys.modules, "serving imported torch"
        print("ok", model.version)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "v000001"]


def test_top_k_matches_brute_force_and_excludes(published, tiny_trained) -> None:
    store, _ = published
    model = OnnxSequenceModel(store.path("v000001"), threads=1)
    vectors = model.user_vectors([["i3", "i4", "unknown-item"], ["i9"]])
    assert vectors.shape == (2, 16) and vectors.dtype == np.float32
    scores = model.item_table[1:] @ vectors[0]
    exclude = {"i0", "i5", "nope"}
    ranking = model.top_k(vectors[0], 7, exclude)
    order = [model.vocab.ids[i] for i in np.argsort(-scores) if model.vocab.ids[i] not in exclude]
    assert [item for item, _ in ranking] == order[:7]
    batched = model.top_k_batch(vectors, 7, [exclude, ()])
    # gemm and gemv round differently: same items, scores equal to float32 precision
    assert [i for i, _ in batched[0]] == [i for i, _ in ranking] and len(batched[1]) == 7
    np.testing.assert_allclose([s for _, s in batched[0]], [s for _, s in ranking], rtol=1e-5)
    assert [i for i, _ in model.recommend([["i3", "i4"]], 7, [exclude])[0]] == [
        i for i, _ in ranking]
    assert len(model.top_k(vectors[0], 10_000)) == model.n_items


def test_serving_model_pickles_and_truncates_long_sequences(published) -> None:
    store, _ = published
    model = OnnxSequenceModel(store.path("v000001"), threads=1)
    long = [f"i{n % 30}" for n in range(100)]
    assert model.encode([long]).shape == (1, 12)
    np.testing.assert_allclose(model.user_vectors([long]), model.user_vectors([long[-12:]]))
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.user_vectors([long]), model.user_vectors([long]))


def test_pruned_top_k_is_exact_on_large_inputs() -> None:
    from streamrec.export.serving import top_k_indices

    rng = np.random.default_rng(0)
    for n, k in ((100_000, 100), (50_001, 7), (5_000, 100), (10, 20)):
        scores = rng.standard_normal(n).astype(np.float32)
        scores[rng.integers(n, size=n // 10)] = -np.inf  # excluded rows
        expected = np.argsort(-scores, kind="stable")[: min(k, n)]
        got = top_k_indices(scores, k)
        np.testing.assert_array_equal(scores[got], scores[expected])
    ties = np.zeros(40_000, dtype=np.float32)
    assert len(top_k_indices(ties, 100)) == 100


def _stable_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The brute-force reference: best first, ties by lower index, NaN last."""
    return np.argsort(-scores, kind="stable")[:k]


def test_top_k_indices_is_exactly_the_stable_brute_force_order() -> None:
    from streamrec.export.serving import top_k_indices

    rng = np.random.default_rng(1)
    cases = []
    for n, k in ((100_000, 100), (100_003, 100), (50_001, 7), (32_000, 1000), (5_000, 100),
                 (10, 20), (10, 10), (1, 1), (3_000, 0)):
        cases.append((rng.standard_normal(n).astype(np.float32), k))
    excluded = rng.standard_normal(100_000).astype(np.float32)
    excluded[rng.integers(100_000, size=30_000)] = -np.inf  # excluded rows
    cases.append((excluded, 100))
    mostly_excluded = np.full(100_000, -np.inf, dtype=np.float32)
    mostly_excluded[rng.integers(100_000, size=40)] = 1.0  # fewer finite rows than k
    cases.append((mostly_excluded, 100))
    cases.append((np.zeros(40_000, dtype=np.float32), 100))  # all tied
    coarse = np.round(rng.standard_normal(100_000) * 2).astype(np.float32)  # many ties
    cases.append((coarse, 100))
    cases.append((coarse, 5_000))
    with_nan = rng.standard_normal(60_000).astype(np.float32)
    with_nan[rng.integers(60_000, size=500)] = np.nan  # NaN ranks last, as in argsort
    cases.append((with_nan, 100))
    for scores, k in cases:
        got = top_k_indices(scores, k)
        np.testing.assert_array_equal(got, _stable_top_k(scores, k),
                                      err_msg=f"n={len(scores)}, k={k}")
        assert got.dtype == np.int64


def test_top_k_excluding_equals_masking_the_excluded_rows() -> None:
    from streamrec.export.serving import top_k_excluding

    rng = np.random.default_rng(2)
    scores = np.round(rng.standard_normal(80_000) * 8).astype(np.float32)  # ties included
    scores[:10] = -np.inf
    for k, n_excluded in ((100, 0), (100, 1), (100, 100), (100, 101), (7, 3_000), (200, 50)):
        excluded = set(rng.choice(len(scores), n_excluded, replace=False).tolist())
        masked = scores.copy()
        masked[list(excluded)] = -np.inf
        expected = [i for i in _stable_top_k(masked, len(masked)) if np.isfinite(masked[i])][:k]
        before = scores.copy()
        np.testing.assert_array_equal(top_k_excluding(scores, k, excluded), expected)
        np.testing.assert_array_equal(scores, before)  # the caller's scores stay untouched


def test_single_vector_retrieval_is_exact_reusable_and_thread_safe(tiny_release) -> None:
    import threading

    rng = np.random.default_rng(3)
    n_items, dim = 60_000, tiny_release.item_table.shape[1]
    table = rng.standard_normal((n_items + 1, dim)).astype(np.float32)
    ids = [f"x{i}" for i in range(n_items)]
    model = OnnxSequenceModel.from_parts(tiny_release.onnx_bytes, ids, table, max_len=12,
                                         threads=1)
    vectors = rng.standard_normal((8, dim))  # float64 in: served as float32
    first = model.scores(vectors[0])
    assert first.dtype == np.float32 and first.shape == (n_items,)
    np.testing.assert_allclose(first, table[1:] @ vectors[0].astype(np.float32), rtol=1e-4,
                               atol=1e-4)
    expected = [_stable_top_k(model.scores(v), 100) for v in vectors]
    np.testing.assert_array_equal(model.scores(vectors[0]), first)  # a copy, not the buffer
    for v, want in zip(vectors, expected):
        np.testing.assert_array_equal(model.top_k_rows(v, 100), want)
        assert [item for item, _ in model.top_k(v, 100)] == [f"x{i}" for i in want]
    exclude = {f"x{i}" for i in expected[0][:5]} | {"not-an-item"}
    assert [item for item, _ in model.top_k(vectors[0], 10, exclude)] == [
        f"x{i}" for i in expected[0][5:15]]
    assert len(model.top_k(vectors[0], n_items + 5)) == n_items  # k >= n: everything, ranked

    results: dict[int, list[np.ndarray]] = {}

    def serve(worker: int) -> None:  # each thread has its own buffer: no crossed scores
        results[worker] = [model.top_k_rows(vectors[(worker + j) % 8], 100) for j in range(40)]

    threads = [threading.Thread(target=serve, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker, rows in results.items():
        for j, got in enumerate(rows):
            np.testing.assert_array_equal(got, expected[(worker + j) % 8])
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.top_k_rows(vectors[1], 100), expected[1])

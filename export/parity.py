"""Parity: ONNX Runtime must reproduce torch before a model is accepted.

``check_parity`` runs the torch model and the ONNX graph on the same sequences at several
batch sizes (1 and 32 by default: a graph can be right at one batch size and wrong at
another when a dimension was specialised) and raises ``ParityError`` if any output differs
by more than ``atol``. It returns the inputs and torch outputs as a ``ParityFixture`` that
the model store saves next to the graph, so a serving process can re-check the graph
against torch's answers with ONNX Runtime alone (``verify_fixture``): torch is imported
only inside ``check_parity``, never by the serving path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import onnxruntime as ort

from streamrec.export.interface import INPUT_NAME
from streamrec.export.onnx_guard import check_inline_weights

ATOL = 1e-4


class ParityError(ValueError):
    """ONNX Runtime disagrees with torch; says at which batch size and by how much."""


@dataclass
class ParityFixture:
    """Reference inputs and the outputs torch gave for them, per batch size."""

    inputs: dict[int, np.ndarray] = field(default_factory=dict)
    outputs: dict[int, np.ndarray] = field(default_factory=dict)
    max_abs_diff: dict[int, float] = field(default_factory=dict)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat name → array mapping for ``np.savez``."""
        out: dict[str, np.ndarray] = {}
        for batch in self.inputs:
            out[f"inputs_{batch}"] = self.inputs[batch]
            out[f"outputs_{batch}"] = self.outputs[batch]
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "ParityFixture":
        fixture = cls()
        for name in arrays:
            if name.startswith("inputs_"):
                batch = int(name.removeprefix("inputs_"))
                fixture.inputs[batch] = np.asarray(arrays[name])
                fixture.outputs[batch] = np.asarray(arrays[f"outputs_{batch}"])
        return fixture


def make_session(onnx_bytes: bytes, threads: int = 2) -> ort.InferenceSession:
    """A CPU ONNX Runtime session with a fixed intra-op thread count (no oversubscription).

    Built from the bytes given, never from a path (the bytes are the ones whose sha256
    was checked), and only if every weight is inline: ``ModelRejected("external_data")``
    otherwise (``streamrec.export.onnx_guard``).
    """
    check_inline_weights(onnx_bytes)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def reference_inputs(n_items: int, max_len: int, batch: int, seed: int = 0) -> np.ndarray:
    """Left-padded random sequences of every length from 0 to ``max_len`` (cycled)."""
    rng = np.random.default_rng(seed + batch)
    seqs = rng.integers(1, n_items + 1, size=(batch, max_len), dtype=np.int64)
    for row in range(batch):
        length = (row * 7 + 1) % (max_len + 1) if batch > 1 else max_len // 2
        seqs[row, :max_len - length] = 0
    return seqs


def compare(batch: int, expected: np.ndarray, actual: np.ndarray, atol: float) -> float:
    """Max absolute difference; ``ParityError`` if shapes differ or it exceeds ``atol``."""
    if expected.shape != actual.shape:
        raise ParityError(f"batch {batch}: ONNX output shape {actual.shape} != torch "
                          f"{expected.shape}")
    diff = float(np.max(np.abs(expected - actual))) if expected.size else 0.0
    if not diff <= atol:  # also catches NaN
        raise ParityError(f"batch {batch}: ONNX Runtime differs from torch by {diff:.3g} "
                          f"(> {atol:g} absolute)")
    return diff


def verify_fixture(session: ort.InferenceSession, fixture: ParityFixture,
                   atol: float = ATOL) -> dict[int, float]:
    """Re-run a stored fixture through ``session``; max abs diff per batch size."""
    if not fixture.inputs:
        raise ParityError("parity fixture holds no reference inputs")
    return {batch: compare(batch, fixture.outputs[batch],
                           session.run(None, {INPUT_NAME: fixture.inputs[batch]})[0], atol)
            for batch in sorted(fixture.inputs)}


def check_parity(model: object, onnx_bytes: bytes, batch_sizes: Sequence[int] = (1, 32),
                 atol: float = ATOL, seed: int = 0, threads: int = 2) -> ParityFixture:
    """Compare torch ``model`` with ``onnx_bytes`` under ONNX Runtime; raise ``ParityError``."""
    import torch  # only here: serving re-checks through verify_fixture without torch

    config = model.config  # type: ignore[attr-defined]
    model.eval()  # type: ignore[attr-defined]
    session = make_session(onnx_bytes, threads)
    fixture = ParityFixture()
    for batch in batch_sizes:
        seqs = reference_inputs(config.n_items, config.max_len, batch, seed)
        with torch.no_grad():
            expected = model(torch.from_numpy(seqs)).numpy()  # type: ignore[operator]
        actual = session.run(None, {INPUT_NAME: seqs})[0]
        fixture.inputs[batch] = seqs
        fixture.outputs[batch] = expected
        fixture.max_abs_diff[batch] = compare(batch, expected, actual, atol)
    return fixture

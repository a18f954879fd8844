"""ONNX export with a dynamic batch axis, and the parity gate against torch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from streamrec.export.interface import INPUT_NAME, OPSET
from streamrec.export.onnx_export import export_onnx
from streamrec.export.parity import ParityError, check_parity, make_session


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_export_matches_torch_at_batch_1_and_32(tiny_trained, exporter: str) -> None:
    exported = export_onnx(tiny_trained.model, exporter)
    assert exported.exporter == exporter
    proto = onnx.load_from_string(exported.onnx_bytes)
    assert any(o.domain in ("", "ai.onnx") and o.version == OPSET for o in proto.opset_import)
    fixture = check_parity(tiny_trained.model, exported.onnx_bytes, threads=1)
    assert set(fixture.max_abs_diff) == {1, 32}
    assert max(fixture.max_abs_diff.values()) <= 1e-4
    session = make_session(exported.onnx_bytes, 1)  # any batch size runs: the axis is dynamic
    for batch in (3, 100):
        seqs = np.zeros((batch, tiny_trained.model.config.max_len), dtype=np.int64)
        assert session.run(None, {INPUT_NAME: seqs})[0].shape == (batch, 16)


def test_parity_failure_is_a_typed_error(tiny_trained, tiny_release) -> None:
    other = type(tiny_trained.model).from_config(tiny_trained.model.config, seed=99).eval()
    with pytest.raises(ParityError, match="batch 1: ONNX Runtime differs from torch"):
        check_parity(other, tiny_release.onnx_bytes, threads=1)


def test_export_leaves_the_model_in_eval_mode(tiny_trained) -> None:
    tiny_trained.model.train()
    export_onnx(tiny_trained.model, "torchscript")
    assert not tiny_trained.model.training
    assert torch.is_grad_enabled()


def test_embedded_retrieval_graph_is_the_generated_one() -> None:
    import base64

    from streamrec.export.interface import RETRIEVAL_GRAPH_B64
    from streamrec.export.onnx_export import retrieval_graph

    assert base64.b64decode(RETRIEVAL_GRAPH_B64) == retrieval_graph()
